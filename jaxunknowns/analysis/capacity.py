"""Capacity measures of trained networks (Neyshabur et al. 2018, "Towards
understanding the role of over-parametrization in generalization of neural
networks"), vmapped over the trainer's run axis.

Notation of the paper for a one-hidden-layer ReLU network f(x) = V [U x]_+
with U in R^{h x d} (hidden layer), V in R^{c x h} (output layer), U_0 / V_0
their initial values, and a training set X of m examples:

  ||U - U_0||_F, ||U||_F, ||V||_F, ||V - V_0||_F   Frobenius norms
  ||U||_2, ||V||_2, ||U_0||_2                      spectral norms
  ||A||_{2,1}                                      sum over the units of a
                                                   layer of the l2 norm of
                                                   each unit's incoming weights
  gamma                                            the 5th percentile of the
                                                   training margins
                                                   f(x)_y - max_{j != y} f(x)_j

Flax stores a Dense kernel as [d_in, d_out] (the transpose of the paper's
matrices); Frobenius and spectral norms do not care, and the (2,1) norm sums
over the columns of the kernel (the units). Biases are left out of every norm
(the framework's MLP has biases, the paper's f(x) = V [U x]_+ has none) but
counted in the parameter count.

The bounds, constants and log factors dropped (so they are comparable across
widths, not absolute probabilities):

  neyshabur2018 = sqrt(c) ||V||_F (||U - U_0||_F + ||U_0||_2) ||X||_F / (gamma m)
                  + sqrt(h / m)
      Theorem 1 of the paper (its first term is
      sqrt(c) ||V||_F (||U - U_0||_F ||X||_F + ||U_0 X||_F) / (gamma m)),
      loosened by ||U_0 X||_F <= ||U_0||_2 ||X||_F. ||X||_F / sqrt(m) is the
      root-mean-square input norm, so this is the brief's
      ||V||_F (||U - U_0||_F + ||U_0||_2) / (gamma sqrt(m)) + sqrt(h/m) with
      the input scale B = rms ||x|| and sqrt(c) written out.
  spectral    = ||X||_F ||U||_2 ||V||_2 ((||U - U_0||_{2,1} / ||U||_2)^(2/3)
                + (||V - V_0||_{2,1} / ||V||_2)^(2/3))^(3/2) / (gamma m)
      Bartlett, Foster & Telgarsky 2017 (Theorem 1.1, reference matrices the
      initial weights, ReLU Lipschitz constant 1).
  vc          = sqrt(num_params / m)
      a parameter-counting (VC-dimension) bound: the VC dimension of a ReLU
      network with W parameters is O(W L log W) (Harvey et al. 2017).

A bound is NaN where gamma <= 0 (more than 5% of the training set
misclassified): a margin bound says nothing there.

Deeper MLPs and conv nets get the layer-wise measures (`layer_measures`) and
the margin; the bounds above are for one hidden layer only.
"""

from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxunknowns import distributed

Tree = Any

# The percentile of the training margins used as gamma (Neyshabur et al. 2018:
# the 5th percentile, robust to a few outliers).
MARGIN_PERCENTILE = 5.0


# -----------------------------------------------------------------------------
# Norms of one matrix (a kernel [d_in, d_out]; conv kernels [..., c_in, c_out]
# are read as [k * c_in, c_out])
# -----------------------------------------------------------------------------
def as_matrix(kernel: jax.Array) -> jax.Array:
  """A Dense or conv kernel as the [fan_in, units] matrix it applies."""
  return kernel.reshape((-1, kernel.shape[-1]))


def frobenius(m: jax.Array) -> jax.Array:
  return jnp.sqrt(jnp.sum(jnp.square(m.astype(jnp.float32))))


def spectral(m: jax.Array) -> jax.Array:
  """Largest singular value of the matrix."""
  return jnp.linalg.svd(as_matrix(m).astype(jnp.float32), compute_uv=False)[0]


def norm_2_1(m: jax.Array) -> jax.Array:
  """Sum over units (kernel columns) of the l2 norm of their incoming weights."""
  m = as_matrix(m).astype(jnp.float32)
  return jnp.sum(jnp.sqrt(jnp.sum(jnp.square(m), axis=0)))


# -----------------------------------------------------------------------------
# Margins
# -----------------------------------------------------------------------------
def margins(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """f(x)_y - max_{j != y} f(x)_j per example ([N, C], [N] -> [N])."""
  logits = logits.astype(jnp.float32)
  correct = jnp.take_along_axis(logits, labels[:, None].astype(jnp.int32), 1)[:, 0]
  others = jnp.where(jax.nn.one_hot(labels, logits.shape[-1], dtype=bool),
                     -jnp.inf, logits)
  return correct - jnp.max(others, axis=-1)


def margin_percentile(logits, labels, q: float = MARGIN_PERCENTILE):
  """gamma: the q-th percentile of the margins (linear interpolation, as
  numpy's default)."""
  return jnp.percentile(margins(logits, labels), q)


# -----------------------------------------------------------------------------
# One hidden layer: the paper's measures and bounds (one run)
# -----------------------------------------------------------------------------
def two_layer(u, u0, v, v0, *, gamma, x_fro, num_examples: int,
              num_params: int) -> Dict[str, jax.Array]:
  """The measures of f(x) = V [U x]_+ for one run.

  u, u0: hidden kernels [d, h] (trained, initial); v, v0: output kernels
  [h, c]; gamma: the margin percentile; x_fro: ||X||_F of the training inputs
  (flattened); num_examples: m; num_params: every parameter, biases included.
  """
  h, c = u.shape[-1], v.shape[-1]
  m = float(num_examples)
  u_dist = frobenius(u - u0)
  v_fro = frobenius(v)
  u_spec, v_spec, u0_spec = spectral(u), spectral(v), spectral(u0)
  valid = gamma > 0
  safe_gamma = jnp.where(valid, gamma, 1.0)
  ours = (jnp.sqrt(float(c)) * v_fro * (u_dist + u0_spec) * x_fro
          / (safe_gamma * m) + jnp.sqrt(h / m))
  ratios = ((norm_2_1(u - u0) / u_spec) ** (2.0 / 3.0)
            + (norm_2_1(v - v0) / v_spec) ** (2.0 / 3.0))
  spectral_bound = x_fro * u_spec * v_spec * ratios ** 1.5 / (safe_gamma * m)
  nan = jnp.float32(jnp.nan)
  return {
      "u_dist_fro": u_dist,
      "u_fro": frobenius(u),
      "u0_fro": frobenius(u0),
      "v_fro": v_fro,
      "v_dist_fro": frobenius(v - v0),
      "u_spectral": u_spec,
      "u0_spectral": u0_spec,
      "v_spectral": v_spec,
      "margin": jnp.asarray(gamma, jnp.float32),
      "bound_neyshabur2018": jnp.where(valid, ours, nan),
      "bound_spectral": jnp.where(valid, spectral_bound, nan),
      "bound_vc": jnp.sqrt(jnp.float32(num_params) / m),
      "num_params": jnp.float32(num_params),
  }


def kernels(params: Tree) -> Dict[str, jax.Array]:
  """{'Dense_0': kernel, ..., 'output': kernel} (module path -> kernel)."""
  out = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    names = [str(getattr(k, "key", k)) for k in path]
    if names[-1] == "kernel":
      out["/".join(names[:-1])] = leaf
  return out


def is_one_hidden_layer(params: Tree) -> bool:
  """True for exactly two dense kernels: a hidden `Dense_0` and `output`."""
  ks = kernels(params)
  return (set(ks) == {"Dense_0", "output"} and ks["Dense_0"].ndim == 2
          and ks["output"].ndim == 2)


def layer_measures(params: Tree, init_params: Tree) -> Dict[str, jax.Array]:
  """Per kernel (one run): ||W||_F, ||W - W_0||_F, ||W||_2; and over the
  network, ||theta - theta_0||_F of the kernels and the product of spectral
  norms."""
  ks, k0 = kernels(params), kernels(init_params)
  out = {}
  dist_sq = jnp.float32(0.0)
  spec_prod = jnp.float32(1.0)
  for name, w in ks.items():
    d = frobenius(w - k0[name])
    s = spectral(w)
    out[f"{name}/fro"] = frobenius(w)
    out[f"{name}/dist_fro"] = d
    out[f"{name}/spectral"] = s
    dist_sq += d ** 2
    spec_prod *= s
  out["dist_fro"] = jnp.sqrt(dist_sq)
  out["spectral_product"] = spec_prod
  return out


# -----------------------------------------------------------------------------
# Run-batched: what an experiment calls after training
# -----------------------------------------------------------------------------
def measure(model, params: Tree, init_params: Tree, batch_stats: Tree,
            x: np.ndarray, y: np.ndarray, *, num_examples: Optional[int] = None,
            chunk: int = 4096) -> Dict[str, np.ndarray]:
  """Every measure of every run: {name: [R]}.

  `params`, `init_params`, `batch_stats`: trees with a leading run axis R;
  `x`, `y`: the training inputs and (possibly corrupted) training labels the
  network was fitted to; `num_examples`: m (default len(y); pass the full
  training set size when x is a subset). Margins are computed in eval mode,
  `chunk` examples at a time.
  """
  # Several processes: the runs' arrays, gathered, are measured on each
  # process alone (host inputs beside global arrays are no valid jit call).
  params, init_params, batch_stats = distributed.host_local(
      (params, init_params, batch_stats))
  m = int(num_examples or len(y))
  x_flat = np.asarray(x, np.float32).reshape(len(x), -1)
  x_fro = float(np.sqrt(np.sum(np.square(x_flat, dtype=np.float64))
                        * m / len(x)))  # ||X||_F of m examples of this rms norm
  has_stats = bool(jax.tree.leaves(batch_stats))

  @jax.jit
  def logits_chunk(params, batch_stats, xb):
    def one(p, bs):
      variables = {"params": p, **({"batch_stats": bs} if has_stats else {})}
      return model.apply(variables, xb, train=False)
    return jax.vmap(one)(params, batch_stats)

  logits = np.concatenate(
      [np.asarray(logits_chunk(params, batch_stats, jnp.asarray(x[i:i + chunk])))
       for i in range(0, len(x), chunk)], axis=1)              # [R, N, C]
  labels = jnp.asarray(y)
  gammas = jax.vmap(lambda lg: margin_percentile(lg, labels))(jnp.asarray(logits))
  num_params = int(sum(np.prod(l.shape[1:]) for l in jax.tree.leaves(params)))

  out = dict(jax.vmap(layer_measures)(params, init_params))
  out["margin"] = gammas
  if is_one_hidden_layer(jax.tree.map(lambda a: a[0], params)):
    ks, k0 = kernels(params), kernels(init_params)
    out.update(jax.vmap(lambda u, u0, v, v0, g: two_layer(
        u, u0, v, v0, gamma=g, x_fro=x_fro, num_examples=m,
        num_params=num_params))(ks["Dense_0"], k0["Dense_0"], ks["output"],
                                k0["output"], gammas))
  else:
    out["num_params"] = jnp.full(gammas.shape, num_params, jnp.float32)
    out["bound_vc"] = jnp.full(gammas.shape, np.sqrt(num_params / m),
                               jnp.float32)
  return {k: np.asarray(v, np.float64)
          for k, v in distributed.device_get(out).items()}
