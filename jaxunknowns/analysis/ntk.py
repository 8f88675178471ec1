"""The empirical neural tangent kernel and the linearized model.

For a network f(w, x) with C outputs, the empirical NTK (Jacot et al. 2018)
of inputs x_i, x_j is

    Theta(x_i, x_j)_{ab} = sum_p  df_a(w, x_i)/dw_p  df_b(w, x_j)/dw_p,

a C x C block per pair: J(x_i) J(x_j)^T with J the [C, P] Jacobian. Which
kernel: `empirical_ntk(..., trace=True)` is the trace over the outputs,
K_ij = sum_a Theta_{aa} ([n1, n2]): the kernel neural-tangents'
`empirical_ntk_fn` gives with its default `trace_axes=(-1,)` times C, since
it divides by the traced size (a mean over outputs). Every use here is
scale-free (relative changes, kernel regression with a ridge relative to
the mean diagonal); the absolute values in kernel0.npz and the records are
C times neural-tangents'. `trace=False` is the full
per-logit kernel [n1, n2, C, C]. In the infinite-width limit Theta = K/C (x) I,
so the trace kernel loses nothing there; at finite width it drops the
off-diagonal logit blocks, which are not small at the widths one trains
(one hidden layer in NTK parameterization, widths 16-1024 on MNIST-1D: at
init, eq. 9 below with the trace kernel and with the full one predict
different classes on a quarter to four fifths of the test examples). The
linearized model's predictions therefore take the full kernel.

How. Jacobian contraction (neural-tangents' "jacobian contraction"
implementation): the per-example Jacobian by `vmap(jacrev)` over examples
(cost n C P; jacrev of a whole batch would cost n times more), then the
contraction leaf by leaf. `chunk` bounds memory: the rows and columns are
computed `chunk` examples at a time (lax.map), holding two [chunk, C, P]
Jacobians, never the whole [n, C, P].

The linearized model (Lee et al. 2019, eq. 6) is the first-order Taylor
expansion around w_0, f_lin(w, x) = f(w_0, x) + J_0(x) (w - w_0), computed
with one JVP (no Jacobian). Trained by gradient flow on the squared loss to
convergence it predicts (their eq. 9, t -> infinity)

    f_lin(x) = f(w_0, x) + Theta_0(x, X) Theta_0(X, X)^{-1} (Y - f(w_0, X))

with Theta_0(X, X) the [n C, n C] matrix of every (example, logit) pair:
`kernel_regression` of the full kernel (`trace=False`).

Every function takes one run's params; the run axis is a `jax.vmap` (or,
where a run's Jacobians are large, `jax.lax.map`) by the caller.
"""

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

# f(params, x[n, ...]) -> [n, C]
ApplyFn = Callable[..., jnp.ndarray]


def jacobian(f: ApplyFn, params, x):
  """Per-example Jacobian: a pytree like params with leaves [n, C, *leaf]."""
  one = lambda p, xi: f(p, xi[None])[0]
  return jax.vmap(jax.jacrev(one), in_axes=(None, 0))(params, x)


def contract(j1, j2, trace: bool = True):
  """sum over parameters of J1 J2^T: [n1, n2] (trace over outputs) or
  [n1, n2, C, C]."""
  spec = "iap,jap->ij" if trace else "iap,jbp->ijab"
  flat = lambda a: a.reshape(a.shape[0], a.shape[1], -1)
  return sum(jnp.einsum(spec, flat(a), flat(b))
             for a, b in zip(jax.tree.leaves(j1), jax.tree.leaves(j2)))


def _chunks(x, chunk):
  if x.shape[0] % chunk:
    raise ValueError(f"{x.shape[0]} examples do not split into chunks of "
                     f"{chunk}")
  return x.reshape((x.shape[0] // chunk, chunk) + x.shape[1:])


def empirical_ntk(f: ApplyFn, params, x1, x2=None, *, trace: bool = True,
                  chunk: int = 0):
  """The empirical NTK of one run on x1 x x2 (x2 None: x1 x x1). `chunk` > 0
  (a divisor of both sizes): blockwise, at most 2 x chunk examples' Jacobians
  in memory."""
  same = x2 is None
  x2 = x1 if same else x2
  if not chunk or (chunk >= x1.shape[0] and chunk >= x2.shape[0]):
    j1 = jacobian(f, params, x1)
    return contract(j1, j1 if same else jacobian(f, params, x2), trace)
  c1, c2 = _chunks(x1, chunk), _chunks(x2, chunk)

  def row(xa):
    ja = jacobian(f, params, xa)
    blocks = jax.lax.map(lambda xb: contract(ja, jacobian(f, params, xb),
                                             trace), c2)
    # [n2/chunk, chunk, chunk, ...] -> [chunk, n2, ...]
    return jnp.moveaxis(blocks, 0, 1).reshape(
        (chunk, x2.shape[0]) + blocks.shape[3:])
  rows = jax.lax.map(row, c1)
  return rows.reshape((x1.shape[0], x2.shape[0]) + rows.shape[3:])


def linearize(f: ApplyFn, params0) -> ApplyFn:
  """f_lin(params, x) = f(params0, x) + J_0(x) (params - params0), by one
  JVP at params0."""
  def f_lin(params, x):
    delta = jax.tree.map(jnp.subtract, params, params0)
    out, tangent = jax.jvp(lambda p: f(p, x), (params0,), (delta,))
    return out + tangent
  return f_lin


def kernel_regression(k_train, k_test_train, y_train, f0_train=None,
                      f0_test=None, ridge: float = 0.0) -> np.ndarray:
  """Predictions f0(x) + Theta(x, X) (Theta(X, X) + ridge I)^{-1} (Y - f0(X))
  [m, C] of targets y_train [n, C].

  k_train [n, n, C, C] and k_test_train [m, n, C, C], the full per-logit
  kernels (`empirical_ntk(trace=False)`): one [n C, n C] system over the
  (example, logit) pairs, the linearized network trained to convergence on
  the squared loss (Lee et al. 2019, eq. 9). Or [n, n] and [m, n], a kernel
  shared by every output (Theta = K (x) I): each column of y its own plain
  kernel regression (eq. 9 only where the network's kernel is K (x) I).
  f0 None: zero.

  On the host in float64 (numpy's LU solve): with fewer parameters than the
  n C outputs, Theta(X, X) is singular, and a ridge of 1e-5 of its mean
  diagonal is about float32's resolution (1e-7) of its largest eigenvalue,
  so a float32 solve's error would be as large as the ridge it rests on.
  As ridge -> 0 the solution is gradient flow's limit on the linearized
  model there too (the least-squares fit by the smallest change of w)."""
  k = np.asarray(k_train, np.float64)
  k_test = np.asarray(k_test_train, np.float64)
  resid = np.asarray(y_train, np.float64)
  if f0_train is not None:
    resid = resid - np.asarray(f0_train, np.float64)
  (n, c), m = resid.shape, k_test.shape[0]
  if k.shape != (n, n) + k.shape[2:] or k.shape[2:] not in ((), (c, c)):
    raise ValueError(f"kernel {k.shape} does not fit targets {resid.shape}: "
                     f"[{n}, {n}] or [{n}, {n}, {c}, {c}]")
  if k.ndim == 4:  # rows and columns (example, logit), logit fastest
    k = k.transpose(0, 2, 1, 3).reshape(n * c, n * c)
    k_test = k_test.transpose(0, 2, 1, 3).reshape(m * c, n * c)
  alpha = np.linalg.solve(k + ridge * np.eye(len(k)),
                          resid.reshape(len(k), -1))
  out = (k_test @ alpha).reshape(m, c)
  return out if f0_test is None else np.asarray(f0_test, np.float64) + out


def mean_diagonal(k) -> float:
  """The mean diagonal of a kernel [n, n] or of a full one [n, n, C, C] as
  its [n C, n C] matrix (what a relative ridge multiplies)."""
  k = np.asarray(k, np.float64)
  return float(np.einsum("iiaa->", k) / (k.shape[0] * k.shape[2])
               if k.ndim == 4 else np.trace(k) / k.shape[0])


tree_norm = optax.tree.norm  # The l2 norm over every leaf (Frobenius).


def relative_change(new, old):
  """||new - old|| / ||old|| of two pytrees (or arrays: Frobenius)."""
  diff = jax.tree.map(jnp.subtract, new, old)
  return tree_norm(diff) / tree_norm(old)


def loglog_slope(x, y) -> Optional[float]:
  """Least-squares slope of log y against log x (positive entries only);
  None with fewer than two points."""
  x, y = np.asarray(x, float), np.asarray(y, float)
  ok = (x > 0) & (y > 0) & np.isfinite(y)
  if ok.sum() < 2:
    return None
  return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])
