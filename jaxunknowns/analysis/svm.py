"""The exact max-margin solutions that implicit-bias experiments measure against.

Everything is phrased for a *linear* constraint matrix Z [M, P] over the
parameter vector w [P]: constraint m is "margin_m(w) = Z[m] . w >= 1".

* binary labels s_n = +-1, no bias:   Z[n] = s_n x_n          (Soudry et al.)
* with a bias:                        append 1 to every x_n
* K classes (pairwise margins):       Z[(n, k)] = d/dw (z_{y_n}(w) - z_k(w))

`margin_matrix` builds Z for any model whose logits are linear in its
parameters (it differentiates the margins), so the rows always follow the
parameter order of `jax.flatten_util.ravel_pytree`.

Solvers (float64 numpy, no iterative tolerance to tune):

* `check_separable(Z)`: a linear program (HiGHS) says whether some w has
  Z w > 0 strictly. If not, `NotSeparable` (a UserError) reports the best
  margin found: the L2-normalised margin of the minimum-total-slack (hinge)
  separator, and how many constraints it violates.
* `hard_margin_svm(Z)`: min ||w||^2 s.t. Z w >= 1 exactly, as Lawson &
  Hanson's least-distance program: one NNLS solved by their finite
  active-set algorithm (scipy's `nnls`), so the result satisfies the KKT
  conditions to rounding error (the residual is returned and checked).
* `linf_max_margin(Z)`: argmax_{|u|_inf <= 1} min_m Z[m] . u, the limit
  direction of sign descent (steepest descent in the l_inf norm, Gunasekar
  et al. 2018): the natural yardstick for Adam-like methods.
* `asymptotic_offset(svm, lr)`: Soudry et al.'s (2018, Thm. 3) w~ with
  w(t) = w_hat log t + w~ + o(1) for GD with step `lr` on the *summed*
  exponential-tailed loss, where the support vectors determine it:
  lr exp(-Z[m] . w~) = alpha_m on the support.
"""

import dataclasses
from typing import Callable, Optional

import jax
import numpy as np

from jaxunknowns.errors import UserError


class NotSeparable(UserError):
  """The data cannot be separated (through the origin) by the model."""


@dataclasses.dataclass(frozen=True)
class MaxMargin:
  """The hard-margin SVM min ||w|| s.t. Z w >= 1."""
  w: np.ndarray             # [P] the SVM solution (margin constraints tight at the SVs).
  alpha: np.ndarray         # [M] dual variables, w = Z' alpha, alpha >= 0.
  support: np.ndarray       # indices m with Z[m] . w = 1 (to rounding), the support vectors.
  kkt_residual: float       # max violation of primal/dual feasibility and complementarity.

  @property
  def norm(self) -> float:
    return float(np.linalg.norm(self.w))

  @property
  def margin(self) -> float:
    """Geometric margin of the unit direction: min_m Z[m] . w / ||w|| = 1/||w||."""
    return 1.0 / self.norm

  @property
  def direction(self) -> np.ndarray:
    return self.w / self.norm


def binary_constraints(x, y, fit_intercept: bool = False) -> np.ndarray:
  """Z[n] = s_n x_n (s = +1 for label 1 (or +1), -1 for label 0 (or -1))."""
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  y = np.asarray(y)
  s = np.where(y > 0, 1.0, -1.0)
  if fit_intercept:
    x = np.concatenate([x, np.ones((len(x), 1))], axis=1)
  return s[:, None] * x


def margin_matrix(margins_fn: Callable, num_params: int) -> np.ndarray:
  """Z = d margins / d w at w = 0 for margins linear in the flat parameters.

  `margins_fn(flat_w) -> [M]`. Exact for linear models; evaluated in float64
  (call inside `jax.enable_x64(True)`) to keep the rows exact.
  """
  zero = np.zeros((num_params,), np.float64)
  rows = jax.eval_shape(margins_fn, zero).shape[0]
  # Forward mode pushes a P x P identity through the model, reverse mode an
  # M x M one: the smaller (CIFAR-10's P = 30,720 made jacfwd's 7.5 GB).
  jacobian = jax.jacfwd if num_params <= rows else jax.jacrev
  z = np.asarray(jacobian(margins_fn)(zero), np.float64)
  offset = np.asarray(margins_fn(zero), np.float64)
  if np.max(np.abs(offset), initial=0.0) > 0:
    raise ValueError("margins are not linear in the parameters (nonzero at w=0)")
  return z


# ---------------------------------------------------------------------------
# Separability (linear programs)
# ---------------------------------------------------------------------------
def _linprog(*args, method: str = "highs", **kwargs):
  from scipy.optimize import linprog  # pylint: disable=g-import-not-at-top
  res = linprog(*args, method=method, **kwargs)
  if res.status not in (0,):
    raise RuntimeError(f"linear program failed: {res.message}")
  return res


def linf_max_margin(z: np.ndarray) -> np.ndarray:
  """The unit-L2 direction of argmax_{|u|_inf <= 1} min_m z[m] . u.

  (The l_inf problem can have several solutions; HiGHS returns a vertex.)
  Returns zeros if the data are not strictly separable.
  """
  from scipy import sparse  # pylint: disable=g-import-not-at-top
  z = np.asarray(z, np.float64)
  m, p = z.shape
  # Variables (u [P], t); maximise t s.t. t - z u <= 0, -1 <= u <= 1.
  c = np.zeros(p + 1)
  c[-1] = -1.0
  a_ub = sparse.hstack([sparse.csr_matrix(-z), np.ones((m, 1))], format="csr")
  # Wider than tall (more weights than margins: images), HiGHS' interior
  # point method (with its crossover to a vertex) is the faster: 16 s
  # against the dual simplex's 147 s at 576 x 30,720 (CIFAR-10's linear
  # model; benchmarks/svm_lp.py).
  res = _linprog(c, A_ub=a_ub, b_ub=np.zeros(m),
                 bounds=[(-1, 1)] * p + [(None, None)],
                 method="highs-ipm" if p > m else "highs")
  u, t = res.x[:p], res.x[-1]
  if t <= 0 or not np.any(u):
    return np.zeros(p)
  return u / np.linalg.norm(u)


def best_separator(z: np.ndarray) -> np.ndarray:
  """min sum_m xi_m s.t. z w >= 1 - xi, xi >= 0: the hinge-loss LP.

  For separable data any solution has zero slack; otherwise it is the best
  linear separator in the total-violation sense.
  """
  from scipy import sparse  # pylint: disable=g-import-not-at-top
  z = np.asarray(z, np.float64)
  m, p = z.shape
  c = np.concatenate([np.zeros(p), np.ones(m)])
  # Sparse: the slack block is an identity (dense, M^2 floats: 10 GB and
  # minutes of HiGHS at M = 36,000, MNIST-1D's 4000 examples x 9 margins),
  # and multiclass margin rows are zero outside two classes' weights.
  a_ub = sparse.hstack([sparse.csr_matrix(-z), -sparse.identity(m, format="csr")],
                       format="csr")
  res = _linprog(c, A_ub=a_ub, b_ub=-np.ones(m),
                 bounds=[(None, None)] * p + [(0, None)] * m)
  return res.x[:p]


# Above this many margin constraints `check_separable` does not search the
# least-hinge separator for its message: that LP has one slack per
# constraint, and HiGHS took 114 s at 9000 (MNIST-1D's first 1000 examples,
# 9 margins each) on a 2-core CPU, and ran past 300 s at 36,000.
HINGE_LP_MAX_CONSTRAINTS = 3000


def check_separable(z: np.ndarray, what: str = "the training data",
                    tol: float = 1e-9) -> None:
  """Raises NotSeparable (one line, with the best margin found) unless some
  w has z w >= 1 (i.e. z w > 0 strictly)."""
  z = np.asarray(z, np.float64)
  u = linf_max_margin(z)
  if np.any(u):
    gamma = float(np.min(z @ u))
    if gamma > tol * max(1.0, float(np.max(np.abs(z)))):
      return
  if len(z) > HINGE_LP_MAX_CONSTRAINTS:
    best = (f"no direction separates them (the l_inf max-margin program "
            f"finds none; the least-hinge separator is not searched over "
            f"{len(z)} margin constraints, more than {HINGE_LP_MAX_CONSTRAINTS})")
    raise NotSeparable(
        f"{what} are not linearly separable by this model: {best}; remove "
        f"label noise, use fewer examples (data.train_size) or separable "
        f"data (data.name=soudry2d or synthetic)")
  w = best_separator(z)
  norm = float(np.linalg.norm(w))
  if norm > 0:
    margins = z @ w / norm
    best = (f"the best separator found (least total hinge violation) has "
            f"normalised margin {float(np.min(margins)):.4g} and violates "
            f"{int(np.sum(margins <= 0))} of {len(z)} margin constraints")
  else:
    best = "no direction beats w = 0 (best margin found: 0)"
  raise NotSeparable(
      f"{what} are not linearly separable by this model (the max-margin "
      f"problem is infeasible): {best}; remove label noise or use "
      f"separable data (data.name=soudry2d or synthetic)")


# ---------------------------------------------------------------------------
# The hard-margin SVM (exact active set on the dual)
# ---------------------------------------------------------------------------
def _min_norm_duals(z_s: np.ndarray) -> np.ndarray:
  """Minimum-norm a with (Z_S Z_S') a = 1: the duals of the constraints in S
  if all of them are tight (duplicated constraints share weight equally)."""
  a, *_ = np.linalg.lstsq(z_s @ z_s.T, np.ones(len(z_s)), rcond=None)
  return a


def hard_margin_svm(z: np.ndarray, *, check: bool = True) -> MaxMargin:
  """min ||w||^2 s.t. z w >= 1 (z: [M, P] float), exactly.

  Lawson & Hanson's least-distance programming (Solving Least Squares
  Problems, ch. 23): with E = [z'; 1'] and f = e_{P+1}, the NNLS solution u
  of min |E u - f|, u >= 0 (scipy's active-set `nnls`, exact up to rounding)
  gives w = z'u / (1 - 1'u) and the duals alpha = u / (1 - 1'u). The duals
  are then made canonical (minimum norm over the tight constraints) and the
  KKT conditions checked. Raises NotSeparable when the problem is infeasible
  (checked by LP first).
  """
  from scipy.optimize import nnls  # pylint: disable=g-import-not-at-top
  z = np.asarray(z, np.float64)
  if z.ndim != 2 or len(z) == 0:
    raise ValueError(f"z must be [M, P] with M >= 1, got shape {z.shape}")
  if check:
    check_separable(z)
  m, p = z.shape
  # Scale rows to unit max norm: the margins scale, the direction does not.
  scale = float(np.max(np.linalg.norm(z, axis=1)))
  zs = z / scale
  e = np.concatenate([zs.T, np.ones((1, m))], axis=0)
  f = np.zeros(p + 1)
  f[-1] = 1.0
  u, _ = nnls(e, f, maxiter=50 * (m + p))
  denom = 1.0 - float(np.sum(u))
  if denom <= 0:
    raise NotSeparable("the max-margin problem is infeasible (LDP residual 0)")
  alpha = u / denom / scale ** 2   # duals of the unscaled problem
  w = z.T @ alpha
  margins = z @ w
  # Canonical duals: minimum-norm weights on every tight constraint.
  tight = np.flatnonzero(np.abs(margins - 1.0) <= 1e-8)
  if len(tight):
    a_tight = _min_norm_duals(z[tight])
    w_tight = z[tight].T @ a_tight
    if np.all(a_tight >= -1e-12) and np.allclose(w_tight, w, rtol=1e-8,
                                                 atol=1e-12):
      alpha = np.zeros(m)
      alpha[tight] = np.maximum(a_tight, 0.0)
      w = z.T @ alpha
      margins = z @ w
  residual = max(
      float(np.max(np.maximum(1.0 - margins, 0.0))),           # primal feasibility
      float(np.max(np.abs(alpha * (margins - 1.0)))),          # complementary slackness
      float(np.max(np.maximum(-alpha, 0.0))))                  # dual feasibility
  if residual > 1e-7:
    raise RuntimeError(f"hard_margin_svm: KKT residual {residual:.3g} too large")
  support = np.flatnonzero(np.abs(margins - 1.0) <= 1e-8)
  return MaxMargin(w=w, alpha=alpha, support=support, kkt_residual=residual)


def asymptotic_offset(svm: MaxMargin, z: np.ndarray,
                      lr: float) -> Optional[np.ndarray]:
  """Soudry et al.'s w~ (GD on the summed loss, step lr), or None.

  w(t) = w_hat log t + w~ + o(1), with lr exp(-z_m . w~) = alpha_m on the
  support vectors. Determined by the SVM alone when the support vectors span
  the parameter space (else the orthogonal part depends on the trajectory).
  Then ||P_perp w~|| / ||w_hat|| is the limit of angle(t) * log t.
  """
  z = np.asarray(z, np.float64)
  sv = svm.support[svm.alpha[svm.support] > 0]
  if len(sv) == 0 or np.linalg.matrix_rank(z[sv]) < z.shape[1]:
    return None
  rhs = np.log(lr / svm.alpha[sv])
  w_tilde, *_ = np.linalg.lstsq(z[sv], rhs, rcond=None)
  if np.max(np.abs(z[sv] @ w_tilde - rhs)) > 1e-6 * max(1.0, np.max(np.abs(rhs))):
    return None  # inconsistent (a degenerate dual): no unique offset.
  return w_tilde


def angle(a: np.ndarray, b: np.ndarray) -> float:
  """The angle between two vectors in radians, accurate for tiny angles."""
  ua = np.asarray(a, np.float64) / np.linalg.norm(a)
  ub = np.asarray(b, np.float64) / np.linalg.norm(b)
  return float(2.0 * np.arctan2(np.linalg.norm(ua - ub), np.linalg.norm(ua + ub)))
