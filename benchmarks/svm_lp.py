"""The l_inf max-margin linear program (analysis/svm.py) by HiGHS' dual
simplex and by its interior point method, side by side on one margin
matrix of each shape: wide (more weights than margins, CIFAR-10's linear
model on 64 images) and tall (sklearn digits-sized, 300 images).

    python benchmarks/svm_lp.py [--wide=576x30720] [--tall=2700x640]

Prints seconds per method and the simplex / interior-point ratio; both
reach the same optimum (checked). svm.linf_max_margin takes the interior
point method for wide problems only.
"""

import time

from absl import app, flags
import numpy as np
from scipy import sparse
from scipy.optimize import linprog

WIDE = flags.DEFINE_string("wide", "576x30720", "margins x weights")
TALL = flags.DEFINE_string("tall", "2700x640", "margins x weights")


def margin_rows(m: int, p: int, classes: int = 10) -> np.ndarray:
  """Multiclass margin rows x_n in class y's block minus x_n in class k's,
  for k != y (as max_margin's LinearModel builds them), inputs in [0, 1]."""
  rng = np.random.default_rng(0)
  d, n = p // classes, m // (classes - 1)
  x, y = rng.random((n, d)), rng.integers(0, classes, n)
  z = np.zeros((n * (classes - 1), p))
  row = 0
  for i in range(n):
    for k in (k for k in range(classes) if k != y[i]):
      z[row, y[i] * d:(y[i] + 1) * d] = x[i]
      z[row, k * d:(k + 1) * d] = -x[i]
      row += 1
  return z


def solve(z: np.ndarray, method: str):
  m, p = z.shape
  a = sparse.hstack([sparse.csr_matrix(-z), np.ones((m, 1))], format="csr")
  t0 = time.perf_counter()
  res = linprog(np.r_[np.zeros(p), -1.0], A_ub=a, b_ub=np.zeros(m),
                bounds=[(-1, 1)] * p + [(None, None)], method=method)
  return time.perf_counter() - t0, -res.fun


def main(_):
  for name, shape in (("wide", WIDE.value), ("tall", TALL.value)):
    z = margin_rows(*map(int, shape.split("x")))
    (ds, t_ds), (ipm, t_ipm) = solve(z, "highs-ds"), solve(z, "highs-ipm")
    assert abs(t_ds - t_ipm) <= 1e-6 * max(1.0, abs(t_ds)), (t_ds, t_ipm)
    print(f"{name} {z.shape[0]} x {z.shape[1]}: simplex {ds:.1f} s, "
          f"interior point {ipm:.1f} s, ratio {ds / ipm:.2f} "
          f"(optimum {t_ds:.6g})", flush=True)


if __name__ == "__main__":
  app.run(main)
