"""L4 compression: in-place transforms of a model's weights, each with its inverse.

Public API:
    MagnitudePrune, prune_, remove_pruning_, is_pruned, sparsity: magnitude pruning
    (unstructured, structured by output unit, per layer or global) through
    ``torch.nn.utils.prune``, undone by ``remove_pruning_``.
"""

from snn5.compress.prune import MagnitudePrune, is_pruned, prune_, remove_pruning_, sparsity

__all__ = ["MagnitudePrune", "is_pruned", "prune_", "remove_pruning_", "sparsity"]
