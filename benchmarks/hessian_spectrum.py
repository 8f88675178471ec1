r"""The cost of the Hessian spectrum: Hessian-vector products per second on
LeNet-300-100 (266,610 parameters), timed (not a test).

  nice python benchmarks/hessian_spectrum.py
  python benchmarks/hessian_spectrum.py --examples=500 --runs=1 --steps=32

The loss is the mean cross-entropy of `--examples` Fashion-MNIST training
examples (eval mode), as in configs/hessian_spectrum.py. Times, compile
excluded, all in this one run of this script:

* Hutchinson: k x m Rademacher probes per run (analysis/spectrum.hutchinson,
  runs vmapped): a loop of forward-over-reverse HVPs and nothing else;
* SLQ: k probes x m Lanczos steps with full reorthogonalisation per run
  (analysis/spectrum.slq, runs vmapped), counted as k x m HVPs;

and prints each rate (HVPs per second, all runs together) and SLQ's as a
fraction of Hutchinson's: what the Lanczos loop (reorthogonalising against
an [m + 1, n] basis per run) costs beyond its HVPs. The weights are those at
initialization: the time does not depend on them.
"""

import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags

from jaxunknowns import config_defaults
from jaxunknowns.analysis import hessian, spectrum
from jaxunknowns.data import load_dataset
from jaxunknowns.losses import LOSSES
from jaxunknowns.models import create_model

_EXAMPLES = flags.DEFINE_integer("examples", 1000, "Training examples of the loss.")
_RUNS = flags.DEFINE_integer("runs", 3, "Runs (seeds) vmapped together.")
_PROBES = flags.DEFINE_integer("probes", 4, "SLQ probes k.")
_STEPS = flags.DEFINE_integer("steps", 64, "Lanczos steps m.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Timed calls of each (best kept).")


def timed(fn, *args):
  jax.block_until_ready(fn(*args))  # compile
  best = np.inf
  for _ in range(_REPEATS.value):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - t0)
  return best


def main(_):
  c = config_defaults.base_config()
  c.data.name = "fashion_mnist"
  ds = load_dataset(c.data)
  x, y = hessian.subset(ds.train, _EXAMPLES.value, 0)
  model = create_model(ml_collections.ConfigDict(
      {"name": "lenet_300_100", "norm": "none"}), ds.num_classes)
  r, k, m = _RUNS.value, _PROBES.value, _STEPS.value
  params = jax.vmap(lambda key: model.init(key, x[:2])["params"])(
      jax.random.split(jax.random.PRNGKey(0), r))
  loss = hessian.network_loss(model, LOSSES.get("cross_entropy"),
                              jnp.asarray(x), jnp.asarray(y),
                              has_batch_stats=False)
  keys = jax.random.split(jax.random.PRNGKey(1), r)

  def operator(p):
    return hessian.flat_operator(lambda q: loss(q, {}), p)

  def slq(p, key):
    matvec, dim, dtype = operator(p)
    return spectrum.slq(matvec, dim, key, num_probes=k, num_steps=m,
                        dtype=dtype)

  def hutchinson(p, key):
    return spectrum.hutchinson(lambda q: loss(q, {}), p, key, k * m)

  dim = operator(jax.tree.map(lambda a: a[0], params))[1]
  print(f"LeNet-300-100, {dim:,} parameters, loss of {len(y)} examples, "
        f"{r} runs vmapped, k = {k} probes x m = {m} steps; "
        f"{jax.devices()[0].device_kind}")
  rates = {}
  for name, fn, hvps in (("Hutchinson", hutchinson, r * k * m),
                         ("SLQ", slq, r * k * m)):
    seconds = timed(jax.jit(jax.vmap(fn)), params, keys)
    rates[name] = hvps / seconds
    print(f"{name:>10}: {hvps} HVPs in {seconds:.3f} s = "
          f"{rates[name]:.1f} HVPs/s")
  print(f"SLQ / Hutchinson rate: {rates['SLQ'] / rates['Hutchinson']:.2f}")


if __name__ == "__main__":
  app.run(main)
