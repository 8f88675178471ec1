"""Pruning: magnitude masks per level, and an optax transform that holds them.

`magnitude` decides which weights survive (layer-wise / global magnitude
pruning, random controls, sparsity reports); `mask_transform` keeps pruned
weights at exactly zero during training and owns the optimizer-state policy
at a rewind. Masks are params-shaped pytrees: bool at prunable kernels, None
elsewhere.
"""

from jaxunknowns.pruning.magnitude import (
    bool_mask, is_output_layer, is_prunable, layer_names, ones_mask,
    prune_global, prune_layerwise, prune_to_sparsity, random_mask_like,
    sparsity_report)
from jaxunknowns.pruning.mask_transform import (
    PruningMaskState, apply_mask, get_mask, reset_inner_state, set_mask,
    with_pruning_mask)

__all__ = [
    "PruningMaskState", "apply_mask", "bool_mask", "get_mask",
    "is_output_layer", "is_prunable", "layer_names", "ones_mask",
    "prune_global", "prune_layerwise", "prune_to_sparsity",
    "random_mask_like", "reset_inner_state", "set_mask", "sparsity_report",
    "with_pruning_mask",
]
