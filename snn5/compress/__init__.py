"""L4 compression: in-place transforms of a model's weights, each with its inverse.

Public API:
    MagnitudePrune, prune_, remove_pruning_, is_pruned, sparsity: magnitude pruning
    (unstructured, structured by output unit, per layer or global) through
    ``torch.nn.utils.prune``, undone by ``remove_pruning_``; HessianPrune: one-shot pruning
    with compensation of the kept weights from calibration data (SparseGPT), no retraining;
    ActivityPrune: |w| times input activity (Wanda; spikes of the presynaptic neurons);
    layer_sparsities: per-layer budgets, uniform or ERK.
    WeightQuant, TernaryQuant, MembraneQuant, quantize_, dequantize_, is_quantized,
    export_quantized, load_quantized_: quantization-aware training of weights (2/4/8 bits,
    per-channel scales, straight-through), ternary weights (absmean) and membranes (stateful
    QAT) through ``torch.nn.utils.parametrize``, undone by ``dequantize_``; integer export.
"""

from snn5.compress.prune import (
    ActivityPrune, HessianPrune, MagnitudePrune, is_pruned, layer_sparsities, prune_,
    remove_pruning_, sparsity,
)
from snn5.compress.quantize import (
    MembraneQuant, TernaryQuant, WeightQuant, dequantize_, export_quantized, is_quantized,
    load_quantized_, quantize_,
)

__all__ = ["ActivityPrune", "HessianPrune", "MagnitudePrune", "MembraneQuant", "TernaryQuant",
           "WeightQuant", "dequantize_", "export_quantized", "is_pruned", "is_quantized",
           "layer_sparsities", "load_quantized_", "prune_", "quantize_", "remove_pruning_",
           "sparsity"]
