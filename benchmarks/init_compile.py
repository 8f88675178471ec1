r"""The compile time of the trainer's init program (not a test).

  nice python benchmarks/init_compile.py
  python benchmarks/init_compile.py --models=resnet8_w4 --repeats=3

`Trainer.init_variables` draws every run's variables in one compiled program
(`jit(vmap(init_one))`): `model.init` on a dummy input, one threefry draw per
parameter. For each model, in this one run of this script and alternating:

* old: that program compiled at XLA's default backend level (-O3), as the
  trainer compiled it before;
* new: the same program with `trainer.init_compiler_options` (LLVM -O1 on
  CPU), as the trainer compiles it now;

each split into trace + lowering (Python, JAX) and XLA compile, the best of
`--repeats` (the caches cleared between), plus the run time of one call,
and the ratio old ÷ new of the compile. Both programs' variables are
checked to be the same bits. XLA_FLAGS must not set a backend level (the
test suite's conftest.py does): it would pin both sides to it.
"""

import os
import time

import jax
import numpy as np
from absl import app, flags

from jaxunknowns import config_defaults
from jaxunknowns.data import Dataset, Split
from jaxunknowns.models import create_model
from jaxunknowns.trainer import Trainer, init_compiler_options

# name: (model fields, input shape)
MODELS = {
    "mlp": ({"name": "mlp", "widths": (100, 100)}, (40,)),
    "lenet_300_100": ({"name": "lenet_300_100"}, (28, 28, 1)),
    "conv2": ({"name": "conv2"}, (28, 28, 1)),
    "resnet8_w4": ({"name": "resnet", "depth": 8, "width": 4}, (32, 32, 3)),
    "resnet8_w16": ({"name": "resnet", "depth": 8, "width": 16}, (32, 32, 3)),
    "resnet20_w16": ({"name": "resnet", "depth": 20, "width": 16},
                     (32, 32, 3)),
    # bn_only's runlocal (depths 8 and 14, width 4, 14 x 14 Fashion-MNIST).
    "resnet14_w4": ({"name": "resnet", "depth": 14, "width": 4},
                    (14, 14, 1)),
}

_MODELS = flags.DEFINE_list("models", list(MODELS), "Models to time.")
_SEEDS = flags.DEFINE_integer("seeds", 2, "Runs (seeds) in the program.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Compiles of each (best kept).")


def make_trainer(fields, shape):
  c = config_defaults.base_config()
  for k, v in fields.items():
    c.model[k] = v
  c.train.batch_size = 8
  rng = np.random.default_rng(0)
  split = Split(x=rng.normal(size=(16,) + shape).astype(np.float32),
                y=rng.integers(0, 10, 16).astype(np.int32))
  ds = Dataset(name="synthetic", num_classes=10, input_shape=shape,
               train=split, test=split)
  return Trainer(c, ds, create_model(c.model, ds.num_classes))


def timed_compile(trainer, keys, options):
  """(trace + lower s, compile s, run s, variables) of jit(vmap(init_one))."""
  jax.clear_caches()
  fn = jax.jit(jax.vmap(trainer.init_one),
               out_shardings=trainer.run_sharding(len(keys)),
               compiler_options=options)
  t0 = time.perf_counter()
  lowered = fn.trace(keys).lower()
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  out = jax.block_until_ready(compiled(keys))
  t3 = time.perf_counter()
  return t1 - t0, t2 - t1, t3 - t2, jax.device_get(out)


def same_bits(a, b):
  bits = lambda x: np.asarray(x).view(np.uint32)
  return all(np.array_equal(bits(x), bits(y))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def main(_):
  if "xla_backend_optimization_level" in os.environ.get("XLA_FLAGS", ""):
    raise SystemExit("XLA_FLAGS sets xla_backend_optimization_level: unset it")
  print(f"jax {jax.__version__}, {jax.devices()[0].platform}, "
        f"{_SEEDS.value} seeds, best of {_REPEATS.value} compiles")
  keys = np.stack([np.asarray(jax.random.key_data(jax.random.PRNGKey(s)))
                   for s in range(_SEEDS.value)])
  print(f"{'model':>14} {'params':>9} | old: trace+lower  compile   run | "
        f"new: trace+lower  compile   run | compile old/new  same bits")
  for name in _MODELS.value:
    trainer = make_trainer(*MODELS[name])
    new_options = init_compiler_options(trainer.mesh)
    best = {"old": [np.inf] * 3, "new": [np.inf] * 3}
    outs = {}
    for _ in range(_REPEATS.value):
      for side, options in (("old", None), ("new", new_options)):
        *times, outs[side] = timed_compile(trainer, keys, options)
        best[side] = [min(b, t) for b, t in zip(best[side], times)]
    old, new = best["old"], best["new"]
    print(f"{name:>14} {trainer.param_counts['total']:>9,} | "
          f"{old[0]:>15.2f} s {old[1]:>6.2f} s {old[2] * 1e3:>4.0f} ms | "
          f"{new[0]:>15.2f} s {new[1]:>6.2f} s {new[2] * 1e3:>4.0f} ms | "
          f"{old[1] / new[1]:>14.1f}x  {same_bits(outs['old'], outs['new'])}",
          flush=True)


if __name__ == "__main__":
  app.run(main)
