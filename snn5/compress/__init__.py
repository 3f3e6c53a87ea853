"""L4 compression: in-place transforms of a model's weights, each with its inverse.

Public API:
    MagnitudePrune, prune_, remove_pruning_, is_pruned, sparsity: magnitude pruning
    (unstructured, structured by output unit, per layer or global) through
    ``torch.nn.utils.prune``, undone by ``remove_pruning_``; HessianPrune: one-shot pruning
    with compensation of the kept weights from calibration data (SparseGPT), no retraining.
"""

from snn5.compress.prune import (
    HessianPrune, MagnitudePrune, is_pruned, prune_, remove_pruning_, sparsity,
)

__all__ = ["HessianPrune", "MagnitudePrune", "is_pruned", "prune_", "remove_pruning_",
           "sparsity"]
