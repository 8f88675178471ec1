"""Analyses of trained networks.

interpolation: linear paths between run-batched states and their error barrier.
stability: linear mode connectivity / instability (Frankle et al. 2020).
"""

from jaxunknowns.analysis.interpolation import (default_chunk, evaluate_path,
                                                instability, interpolate,
                                                path_evaluator)
from jaxunknowns.analysis.stability import (DEFAULT_DATA_SEED_OFFSET,
                                            linear_mode_connectivity)

__all__ = ["DEFAULT_DATA_SEED_OFFSET", "default_chunk", "evaluate_path",
           "instability", "interpolate", "linear_mode_connectivity",
           "path_evaluator"]
