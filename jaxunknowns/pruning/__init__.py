"""Pruning: magnitude masks per level (layer-wise / global magnitude pruning,
random controls, sparsity reports). Masks are params-shaped pytrees: bool at
prunable kernels, None elsewhere; `optim.with_update_mask` keeps pruned weights
at exactly zero during training.
"""

from jaxunknowns.pruning.magnitude import (
    is_output_layer, is_prunable, layer_names, ones_mask, prune_global,
    prune_layerwise, prune_to_sparsity, random_mask_like, sparsity_report)

__all__ = [
    "is_output_layer", "is_prunable", "layer_names", "ones_mask",
    "prune_global", "prune_layerwise", "prune_to_sparsity",
    "random_mask_like", "sparsity_report",
]
