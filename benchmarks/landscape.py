r"""A 51x51 filter-normalized loss landscape of LeNet-300-100 on the full
Fashion-MNIST training set, timed (not a test).

  nice python benchmarks/landscape.py                      # the full one
  python benchmarks/landscape.py --points=11 --examples=6000 --path=both

Li et al.'s plot: 2601 networks theta + a d1 + b d2 on (a, b) in [-1, 1]^2,
each evaluated (eval mode) on 60,000 training images: 2601 x 60000 forward
passes of 2 x 266,200 FLOPs = 83 TFLOP the plain way. Prints, per path:
compile time, run time, the FLOPs actually executed, and FLOP/s two ways:
"executed" (what the machine did) and "plain-equivalent" (83 TFLOP / time,
the rate a plain evaluation would need to match us).

Paths. `plain`: every point runs the whole network (vmapped over points).
`fast`: the first layer for all points from one matmul per data chunk,
x @ [W | D1 | D2] (it is affine in (a, b)); each point runs only layers 2-3.
`both` runs plain then fast on the same problem and checks they agree.

The network is LeNet-300-100 after `--train_steps` steps of Adam (a trained
network: the surface has a minimum at the centre; the time does not depend
on the weights).
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from jaxunknowns import config_defaults
from jaxunknowns.analysis import landscape
from jaxunknowns.data import load_dataset
from jaxunknowns import runs

_POINTS = flags.DEFINE_integer("points", 51, "Grid points per axis.")
_EXAMPLES = flags.DEFINE_integer("examples", 0,
                                 "Training examples (0 = all 60,000).")
_CHUNK = flags.DEFINE_integer("chunk", 2000, "Examples per data chunk.")
_PPC = flags.DEFINE_integer("points_per_chunk", 51,
                            "Grid points vmapped together.")
_PATH = flags.DEFINE_enum("path", "fast", ["fast", "plain", "both"],
                          "Which evaluation to time.")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 500,
                                    "Adam steps before the landscape.")


def build():
  c = config_defaults.base_config()
  c.data.name = "fashion_mnist"
  c.model.name = "lenet_300_100"
  c.optim.name, c.optim.lr = "adam", 1.2e-3
  c.train.batch_size = 60
  c.train.steps = max(_TRAIN_STEPS.value, 1)
  c.train.log_every = min(100, c.train.steps)
  c.train.eval_batch_size = _CHUNK.value
  c.train.max_train_eval = _EXAMPLES.value
  c.train.eval_every = 0
  c.train.checkpoint_every = 0
  return c


def main(argv):
  del argv
  config = build()
  trainer = runs.build_trainer(config, dataset=load_dataset(config.data))
  state = trainer.init_state([0])
  if _TRAIN_STEPS.value > 0:
    state, _ = trainer.train_steps(state, [0], _TRAIN_STEPS.value)
  params = landscape.take_run(state["params"], 0)
  stats = landscape.take_run(state["batch_stats"], 0)
  data = trainer.eval_data["train"]
  n_examples = int(np.asarray(data[2]).sum())
  ax = landscape.axis(-1.0, 1.0, _POINTS.value, "--points")
  coords = landscape.grid_points(ax, ax)
  dirs = landscape.filter_normalized_directions(jax.random.PRNGKey(0),
                                                params, 2)
  per_example = landscape.forward_flops_per_example(params, None)
  first = int(np.prod(params["Dense_0"]["kernel"].shape)) * 2
  plain_flops = len(coords) * n_examples * per_example
  fast_flops = (len(coords) * n_examples * (per_example - first)
                + 3 * n_examples * first)
  print(f"LeNet-300-100, {n_examples} Fashion-MNIST training examples, "
        f"{len(coords)} grid points ({_POINTS.value}x{_POINTS.value}), "
        f"chunks of {_CHUNK.value} examples x {_PPC.value} points, "
        f"{jax.devices()[0].device_kind} x {len(jax.devices())}")
  print(f"plain-equivalent work: {plain_flops / 1e12:.2f} TFLOP "
        f"({per_example:,} FLOP per forward pass)")
  paths = ["plain", "fast"] if _PATH.value == "both" else [_PATH.value]
  results = {}
  for path in paths:
    dense = (landscape.first_dense_path(trainer.model, params,
                                        trainer.dataset.input_shape)
             if path == "fast" else None)
    fn = landscape.surface_fn(trainer.model, trainer.loss_fn,
                              has_batch_stats=trainer.has_batch_stats,
                              points_per_chunk=_PPC.value, dense_path=dense)
    args = (params, stats, dirs, jnp.asarray(coords), *data)
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    t_run = time.perf_counter() - t0
    executed = plain_flops if path == "plain" else fast_flops
    results[path] = np.asarray(out["loss"])
    centre = results[path][len(coords) // 2]
    print(f"[{path}] compile {t_compile:.1f} s, run {t_run:.1f} s; executed "
          f"{executed / 1e12:.2f} TFLOP at {executed / t_run / 1e9:.1f} "
          f"GFLOP/s; plain-equivalent {plain_flops / t_run / 1e9:.1f} GFLOP/s; "
          f"loss at the centre {centre:.4f}, min {results[path].min():.4f}, "
          f"max {results[path].max():.4f}")
  if len(results) == 2:
    diff = np.max(np.abs(results["plain"] - results["fast"]) /
                  np.maximum(1.0, np.abs(results["plain"])))
    print(f"max relative difference fast vs plain: {diff:.2e}")


if __name__ == "__main__":
  app.run(main)
