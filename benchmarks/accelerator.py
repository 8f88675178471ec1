r"""Accelerator benchmarks (issue 7, row 5): one short script for a lent GPU/TPU.

  python benchmarks/accelerator.py [--study_timeout=270] [--out=DIR]

Prints, in one run on whatever `jax.devices()` gives:
  0. The machine's ceilings, measured here: a large float32 and bfloat16
     matrix product (TFLOP/s). The "fraction of peak" below is against these.
  1. ResNet-20 (width 16, BN) on CIFAR-shaped random data through the real
     trainer, SGD momentum, at batch 128 (the paper's) and 1024: images/s,
     the step's FLOPs from XLA's cost analysis, achieved TFLOP/s and the
     fraction of the measured float32 ceiling. Then 8 seeds of it vmapped in
     one program in bfloat16 (`train.precision`): images/s over all seeds
     and the fraction of the measured bfloat16 ceiling.
  2. The step of one IMP level's program (LeNet-300-100, 3 arms x 5 seeds
     vmapped, Adam, batch 60, the pruning mask transform) under options
     that may cut its per-step latency, each variant in its own process
     (XLA reads its flags once): a scan unrolled (`train.unroll`: one loop
     condition, one host round trip, per K steps), the whole while loop
     recorded as one CUDA graph (`--xla_gpu_enable_command_buffer=+WHILE`),
     and both; diagnostics (LEVEL_DIAGNOSTICS) change one thing each to split
     the step's time. Steps/s, microseconds per step and the mean loss after
     the same steps (a variant whose loss differs is not used). The fastest
     variant that is not a diagnostic runs the study (4).
  3. A 32-run vmapped LeNet-300-100 sweep (32 learning rates, Adam, batch
     60, MNIST-shaped data) as one program vs one run of it: run-steps/s
     of each and the wall-time ratio of the same number of steps (32 runs
     cost this many times one run; 32 would mean no gain from batching).
  4. The Frankle & Carbin LeNet-300-100 study through the real `imp`
     experiment: 20 levels x 5 seeds x (ticket, random reinit, random prune),
     50K iterations each (5 dense + 20 x 15 = 305 trainings; seeds and
     controls batched in one program per level), on Fashion-MNIST (the
     offline stand-in for MNIST; the same shapes), with the fastest variant
     of (2). Run as a subprocess under a deadline: if it does not finish,
     the time is projected from the levels that did.
Compile time is excluded from throughput figures (warm-up calls first) and
included in the study's wall time (it is what a user waits for).
"""

import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from jaxunknowns import config_defaults, optim, pruning
from jaxunknowns.data import Dataset, Split
from jaxunknowns.models import create_model
from jaxunknowns.trainer import Trainer

import timing  # benchmarks/timing.py

_RESNET_STEPS = flags.DEFINE_integer("resnet_steps", 1000, "Timed ResNet-20 steps.")
_RESNET_BATCHES = flags.DEFINE_list("resnet_batches", ["128", "1024"],
                                    "ResNet-20 batch sizes to time.")
_BF16_SEEDS = flags.DEFINE_integer("bf16_seeds", 8,
                                   "Seeds of the vmapped bfloat16 ResNet-20 row.")
_SWEEP_RUNS = flags.DEFINE_integer("sweep_runs", 32, "Runs of the vmapped LeNet sweep.")
_SWEEP_STEPS = flags.DEFINE_integer("sweep_steps", 5000, "Timed steps of the LeNet sweep.")
_STUDY_STEPS = flags.DEFINE_integer("study_steps", 50000, "Iterations per IMP level.")
_STUDY_LEVELS = flags.DEFINE_integer("study_levels", 20, "IMP levels after the dense one.")
_STUDY_SEEDS = flags.DEFINE_integer("study_seeds", 5, "Seeds of the IMP study.")
_STUDY_TIMEOUT = flags.DEFINE_float("study_timeout", 270.0, "Seconds the study may run.")
_DEADLINE = flags.DEFINE_float(
    "deadline_s", 0.0, "Seconds the whole script may take (0: no limit): the "
    "study's deadline is cut to what is left, minus a minute for its files.")
_SKIP_STUDY = flags.DEFINE_bool("skip_study", False, "Leave out the IMP study.")
_SKIP_SWEEP = flags.DEFINE_bool("skip_sweep", False,
                                 "Leave out the LeNet sweep row (3).")
_SKIP_RESNET = flags.DEFINE_bool(
    "skip_resnet", False, "Leave out the ResNet-20 rows (minutes on a CPU).")
_VARIANTS = flags.DEFINE_list(
    "variants", ["default", "unroll_8", "unroll_32", "while_graph",
                 "while_graph_unroll_8", "while_graph_unrolled"],
    "Variants of the IMP level program to time (row 2; LEVEL_VARIANTS); "
    "empty: none, and the study runs as configured.")
_PROBE_STEPS = flags.DEFINE_integer("probe_steps", 5000,
                                    "Timed steps of each level-program variant.")
_PROBE = flags.DEFINE_string(
    "probe", "", "Internal: time this one variant in this process and print "
    "its row as JSON (main runs one process per variant).")
_STUDY_DIR = flags.DEFINE_string(
    "study_dir", "", "The study's workdir (default: OUT/imp_study).")
_OUT = flags.DEFINE_string("out", "", "Folder for results.json and the study's log.")
_FASHION_DIR = flags.DEFINE_string(
    "fashion_dir", config_defaults.FASHION_MNIST_DIR,
    "Folder of the Fashion-MNIST IDX files for the study.")


def matmul_tflops(dtype, n=8192, reps=10):
  """Measured rate of an n^3 matrix product: this machine's ceiling."""
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  a = jax.random.normal(k1, (n, n), dtype)
  b = jax.random.normal(k2, (n, n), dtype)
  f = jax.jit(lambda a, b: a @ b)
  f(a, b).block_until_ready()
  t0 = time.perf_counter()
  for _ in range(reps):
    out = f(a, b)
  out.block_until_ready()
  return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e12


def random_data(name, shape, n):
  """Uniform random inputs of `shape` and 10 random classes: speed only."""
  rng = np.random.default_rng(0)
  split = lambda m: Split(rng.random((m,) + shape, np.float32),
                          rng.integers(0, 10, m).astype(np.int32))
  return Dataset(name=name, num_classes=10, input_shape=shape,
                 train=split(n), test=split(1000))


def cifar_shaped(n=50000):
  return random_data("random_cifar", (32, 32, 3), n)


def resnet_config(batch_size):
  c = config_defaults.base_config()
  c.model.name = "resnet"
  c.model.depth, c.model.width = 20, 16
  c.model.norm = "batch"
  c.optim.name, c.optim.lr, c.optim.momentum = "momentum", 0.1, 0.9
  c.optim.weight_decay = 1e-4
  c.train.batch_size = batch_size
  c.train.log_every = min(100, _RESNET_STEPS.value)  # Tiny CPU smoke runs.
  c.data.augment = "crop_flip"
  return c


def step_flops(trainer, batch_size):
  """FLOPs of one training step (forward + backward), from XLA's cost model.

  Counted by XLA:CPU whatever the device: on GPU the compiled program's count
  leaves out the convolutions (cuDNN custom calls) and the lowered program's
  count is not available (JAX 0.11, seen on an H100), which would make the
  figure ~50x too low.
  """
  cpu = jax.devices("cpu")[0]
  template = jax.device_get(jax.tree.map(lambda x: x[0], trainer.init_state([0])))
  with jax.default_device(cpu):
    one = jax.device_put(template, cpu)
    x = jnp.zeros((batch_size, 32, 32, 3), jnp.float32)
    y = jnp.zeros((batch_size,), jnp.int32)

    def loss(params):
      logits, _ = trainer.model.apply(
          {"params": params, "batch_stats": one["batch_stats"]}, x, train=True,
          mutable=["batch_stats"])
      return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits),
                                           y[:, None], axis=1))

    cost = jax.jit(jax.grad(loss)).lower(one["params"]).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", float("nan")))


time_trainer = timing.trainer_steps_per_second


def resnet_rows(data, fp32_peak):
  rows = []
  for batch in map(int, _RESNET_BATCHES.value):
    c = resnet_config(batch)
    trainer = Trainer(c, data, create_model(c.model, 10))
    steps_per_s = time_trainer(trainer, [0], _RESNET_STEPS.value)
    flops = step_flops(trainer, batch)
    tflops = flops * steps_per_s / 1e12
    rows.append({"batch": batch, "images_per_s": steps_per_s * batch,
                 "step_flops": flops, "tflops": tflops,
                 "fraction_of_fp32_peak": tflops / fp32_peak})
  return rows


def resnet_bf16_row(data, bf16_peak):
  """ResNet-20 at batch 128, `--bf16_seeds` seeds vmapped, bfloat16 compute
  with float32 master weights (the trainer's `train.precision`)."""
  c = resnet_config(128)
  c.train.precision = "bfloat16"
  trainer = Trainer(c, data, create_model(c.model, 10))
  seeds = list(range(_BF16_SEEDS.value))
  steps_per_s = time_trainer(trainer, seeds, _RESNET_STEPS.value)
  tflops = step_flops(trainer, 128) * len(seeds) * steps_per_s / 1e12
  return {"batch": 128, "seeds": len(seeds),
          "images_per_s": steps_per_s * 128 * len(seeds), "tflops": tflops,
          "fraction_of_bf16_peak": tflops / bf16_peak}


def lenet_sweep_row(data):
  """32 learning rates of LeNet-300-100 (Adam, batch 60) as one vmapped
  program (per-run `optim.lr`, hparams.py) vs one run of the same program."""
  c = config_defaults.base_config()
  c.model.name = "lenet_300_100"
  c.optim.name, c.optim.lr = "adam", 1.2e-3
  c.train.batch_size, c.train.log_every = 60, min(500, _SWEEP_STEPS.value)
  trainer = Trainer(c, data, create_model(c.model, 10), hparams=("lr",))
  runs = _SWEEP_RUNS.value
  rates = {}
  for n in (1, runs):
    lrs = list(np.geomspace(1e-4, 1e-2, n)) if n > 1 else [1.2e-3]
    rates[n] = time_trainer(trainer, list(range(n)), _SWEEP_STEPS.value,
                            hparams={"lr": lrs})
  return {"runs": runs, "one_run_steps_per_s": rates[1],
          "sweep_steps_per_s": rates[runs],
          "sweep_run_steps_per_s": rates[runs] * runs,
          "wall_time_ratio": rates[1] / rates[runs]}


# Row 2's variants: (XLA_FLAGS added, train.unroll). XLA's command buffers
# (CUDA graphs) already record runs of kernels by default; +WHILE records a
# whole while loop, condition included, so a scan of K steps launches once
# instead of reading its condition back to the host K times.
_WHILE = "--xla_gpu_enable_command_buffer=+WHILE"
LEVEL_VARIANTS = {
    "default": ("", 1),
    "unroll_8": ("", 8),
    "while_graph": (_WHILE, 1),
    "while_graph_unroll_8": (_WHILE, 8),
    "while_graph_unrolled": (
        _WHILE + " --xla_gpu_command_buffer_unroll_loops=true", 1),
    "unroll_32": ("", 32),
    # Independent kernels of a step (e.g. the weight and input gradients of
    # a layer) may overlap inside its CUDA graph.
    "unroll_8_concurrent": (
        "--xla_gpu_command_buffer_scheduling_mode=CONCURRENT", 8),
    "unroll_8_concurrent_regions": (
        "--xla_gpu_command_buffer_scheduling_mode=CONCURRENT_REGIONS", 8),
}
LEVEL_RUNS = 15  # 3 arms (ticket, random reinit, random prune) x 5 seeds
# Diagnostics (not candidates for the study): the unroll_8 program with one
# thing changed, to split its step time into a fixed part and per-run work
# (runs), the mask transform, Adam's state, and the matrix products (bf16).
LEVEL_DIAGNOSTICS = {
    "unroll_8_1_run": {"runs": 1},
    "unroll_8_5_runs": {"runs": 5},
    "unroll_8_no_mask": {"mask": False},
    "unroll_8_sgd": {"optimizer": "sgd"},
    "unroll_8_bf16": {"precision": "bfloat16"},
    # Adam over one flat vector of all parameters (optax.flatten): one
    # update kernel instead of one per leaf, at the price of concatenations.
    "unroll_8_flat_adam": {"flatten": True},
}
LEVEL_VARIANTS.update({name: LEVEL_VARIANTS["unroll_8"]
                       for name in LEVEL_DIAGNOSTICS})


def level_trainer(data, unroll, optimizer="adam", precision="float32",
                  mask=True, flatten=False):
  """The program of one IMP level of the LeNet-300-100 study: the imp
  experiment's settings (configs/imp.py:lenet_fashion), every run's mask in
  the optimizer state (all ones here: the values do not change the work)."""
  c = config_defaults.base_config()
  c.model.name = "lenet_300_100"
  c.optim.name, c.optim.lr = optimizer, 1.2e-3
  c.train.batch_size, c.train.log_every = 60, min(1000, _PROBE_STEPS.value)
  c.train.loop, c.train.unroll = "scan", unroll
  c.train.precision = precision
  wrapper = functools.partial(optim.with_update_mask,
                              initial_mask=pruning.ones_mask) if mask else None
  if flatten:
    wrapper = lambda tx: optim.with_update_mask(
        optax.flatten(tx), initial_mask=pruning.ones_mask)
  return Trainer(c, data, create_model(c.model, 10), tx_wrapper=wrapper)


def probe_level(name):
  """Row 2, one variant, in this process (its XLA_FLAGS already set)."""
  _, unroll = LEVEL_VARIANTS[name]
  change = dict(LEVEL_DIAGNOSTICS.get(name, {}))
  runs = change.pop("runs", LEVEL_RUNS)
  t0 = time.perf_counter()
  trainer = level_trainer(random_data("random_mnist", (28, 28, 1), 60000),
                          unroll, **change)
  seeds = list(range(runs))
  state = trainer.init_state(seeds)
  state, _ = trainer.train_steps(state, seeds, trainer.chunk)  # Compile.
  jax.block_until_ready(state)
  setup_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  done = 0
  while done < _PROBE_STEPS.value:
    state, metrics = trainer.train_steps(state, seeds, trainer.chunk)
    done += trainer.chunk
  jax.block_until_ready(state)
  rate = done / (time.perf_counter() - t0)
  losses = np.asarray(metrics["loss"])
  return {"variant": name, "xla_flags": LEVEL_VARIANTS[name][0],
          "unroll": unroll, "runs": runs, "diagnostic": name in LEVEL_DIAGNOSTICS,
          "steps_per_s": rate,
          "us_per_step": 1e6 / rate, "setup_and_compile_s": setup_s,
          "last_chunk_mean_loss": float(losses.mean())}


def level_rows(log_path):
  """Row 2: every variant of `--variants` in its own process."""
  rows = []
  with open(log_path, "w") as log:
    for name in _VARIANTS.value:
      extra, _ = LEVEL_VARIANTS[name]
      env = dict(os.environ)
      env["XLA_FLAGS"] = " ".join(f for f in (env.get("XLA_FLAGS", ""), extra)
                                  if f)
      cmd = [sys.executable, os.path.abspath(__file__), f"--probe={name}",
             f"--probe_steps={_PROBE_STEPS.value}"]
      proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                            timeout=150)
      log.write(f"== {name}: XLA_FLAGS={env['XLA_FLAGS']!r}\n"
                f"{proc.stdout}{proc.stderr[-4000:]}\n")
      found = [l for l in proc.stdout.splitlines() if l.startswith("PROBE ")]
      row = (json.loads(found[-1][len("PROBE "):]) if found else
             {"variant": name, "error": f"exit {proc.returncode}: "
              f"{(proc.stderr.strip().splitlines() or [''])[-1][:300]}"})
      rows.append(row)
      print(f"   {name:22s} " + (
          f"{row['steps_per_s']:8.0f} steps/s ({row['us_per_step']:6.1f} us/step), "
          f"loss {row['last_chunk_mean_loss']:.4f}, setup+compile "
          f"{row['setup_and_compile_s']:.0f} s" if "error" not in row
          else row["error"]), flush=True)
  return rows


def fastest_variant(rows):
  """The fastest variant whose loss matches the default's (to 2%): the same
  training, only launched differently."""
  ok = [r for r in rows if "error" not in r and not r["diagnostic"]]
  base = next((r for r in ok if r["variant"] == "default"), None)
  if base is not None:
    ok = [r for r in ok if abs(r["last_chunk_mean_loss"] -
                               base["last_chunk_mean_loss"]) <= 0.02 * abs(
                                   base["last_chunk_mean_loss"])]
  return max(ok, key=lambda r: r["steps_per_s"]) if ok else None


_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LEVEL_LINE = re.compile(r"level (\d+): ([\d.]+)% of weights remain")


def run_study(workdir, log_path, variant=None, timeout=None):
  """The IMP study as a user runs it, with row 2's `variant` (its XLA_FLAGS
  and train.unroll; None: as configured); returns timings (projected if
  cut)."""
  steps, levels = _STUDY_STEPS.value, _STUDY_LEVELS.value
  timeout = _STUDY_TIMEOUT.value if timeout is None else timeout
  cmd = [sys.executable, "-m", "jaxunknowns.main",
         "--config=configs/imp.py:lenet_fashion",
         f"--workdir={os.path.abspath(workdir)}",
         f"--config.seeds={_STUDY_SEEDS.value}",
         f"--config.data.source_dir={os.path.abspath(_FASHION_DIR.value)}",
         f"--config.prune.levels={levels}", f"--config.train.steps={steps}",
         "--config.train.log_every=1000", "--config.train.eval_every=5000",
         "--config.train.checkpoint_every=25000"]
  if steps < 5000:  # Tiny smoke settings: keep the multiples valid.
    cmd[-3:] = [f"--config.train.log_every={steps}",
                f"--config.train.eval_every={steps}",
                f"--config.train.checkpoint_every={steps}"]
  env = dict(os.environ)
  if variant is not None:
    cmd.append(f"--config.train.unroll={variant['unroll']}")
    env["XLA_FLAGS"] = " ".join(f for f in (env.get("XLA_FLAGS", ""),
                                            variant["xla_flags"]) if f)
  t0 = time.time()
  done_at = {}
  with open(log_path, "w") as log:
    log.write(f"XLA_FLAGS={env.get('XLA_FLAGS', '')!r}\n")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1, cwd=_REPO,  # configs/ is there.
                            env=env)
    try:
      for line in proc.stdout:
        log.write(line)
        m = _LEVEL_LINE.search(line)
        if m:
          done_at[int(m.group(1))] = time.time() - t0
        if time.time() - t0 > timeout:
          proc.kill()
          break
      proc.wait(timeout=60)
    finally:
      if proc.poll() is None:
        proc.kill()
  wall = time.time() - t0
  finished = proc.returncode == 0
  out = {"command": " ".join(cmd[1:]), "xla_flags": env.get("XLA_FLAGS", ""),
         "finished": finished, "wall_s": wall,
         "returncode": proc.returncode,
         "levels_done": sorted(done_at),
         # The dense level trains S runs; each pruned level 3S (ticket + 2 controls).
         "trainings": _STUDY_SEEDS.value * (1 + 3 * levels)}
  if len(done_at) >= 2:
    ks = sorted(done_at)
    per_level = (done_at[ks[-1]] - done_at[ks[0]]) / (ks[-1] - ks[0])
    out["seconds_per_pruned_level"] = per_level
    out["projected_total_s"] = done_at[ks[0]] + per_level * (levels - ks[0])
  if finished:
    with open(os.path.join(workdir, "summary.json")) as f:
      summary = json.load(f)
    out["accuracy_by_level"] = []
    for e in summary["levels"]:
      row = {"level": e["level"], "weights_remaining": e["weights_remaining"],
             "ticket": e["test_accuracy"]["mean"]}
      row.update({v: e[v]["test_accuracy"]["mean"]
                  for v in ("random_reinit", "random_prune") if v in e})
      out["accuracy_by_level"].append(row)
  return out


def main(argv):
  del argv
  if _PROBE.value:
    print("PROBE " + json.dumps(probe_level(_PROBE.value)), flush=True)
    return
  unknown = [v for v in _VARIANTS.value if v not in LEVEL_VARIANTS]
  if unknown:
    raise app.UsageError(f"--variants: unknown {unknown}; known: "
                         f"{', '.join(LEVEL_VARIANTS)}")
  out_dir = _OUT.value or tempfile.mkdtemp(prefix="accel_")
  os.makedirs(out_dir, exist_ok=True)
  started = time.time()
  dev = jax.devices()[0]
  results = {"device": f"{dev.platform} {dev.device_kind}",
             "num_devices": jax.device_count(), "jax": jax.__version__,
             "date": time.strftime("%Y-%m-%d")}

  def save():  # after every row: a run cut short keeps what it measured
    with open(os.path.join(out_dir, "results.json"), "w") as f:
      json.dump(results, f, indent=1)

  print(f"devices: {jax.devices()}  jax {jax.__version__}", flush=True)
  n = 8192 if dev.platform != "cpu" else 1024
  results["fp32_tflops"] = matmul_tflops(jnp.float32, n)
  results["bf16_tflops"] = matmul_tflops(jnp.bfloat16, n)
  print(f"0. ceilings: float32 matmul {results['fp32_tflops']:.1f} TFLOP/s, "
        f"bfloat16 {results['bf16_tflops']:.1f} TFLOP/s", flush=True)
  save()
  try:
    if _SKIP_SWEEP.value:
      raise RuntimeError("skipped (--skip_sweep)")
    r = results["lenet_sweep"] = lenet_sweep_row(
        random_data("random_mnist", (28, 28, 1), 60000))
    print(f"3. LeNet-300-100, {r['runs']} learning rates in one program: "
          f"{r['sweep_run_steps_per_s']:.0f} run-steps/s vs one run's "
          f"{r['one_run_steps_per_s']:.0f} steps/s; {r['runs']} runs take "
          f"{r['wall_time_ratio']:.2f}x the wall time of one", flush=True)
  except Exception as e:  # pylint: disable=broad-except
    results["lenet_sweep_error"] = repr(e)
    print(f"3. LeNet sweep failed: {e!r}", flush=True)
  save()
  try:
    if _SKIP_RESNET.value:
      raise RuntimeError("skipped (--skip_resnet)")
    results["resnet20"] = resnet_rows(cifar_shaped(), results["fp32_tflops"])
    print("1. ResNet-20 on CIFAR-shaped data (trainer, SGD momentum, crop+flip)")
    for r in results["resnet20"]:
      print(f"   batch {r['batch']:5d}: {r['images_per_s']:10.0f} images/s, "
            f"{r['step_flops'] / 1e9:.2f} GFLOP/step, {r['tflops']:.2f} TFLOP/s "
            f"= {100 * r['fraction_of_fp32_peak']:.1f}% of the float32 ceiling",
            flush=True)
    save()
    r = results["resnet20_bf16"] = resnet_bf16_row(cifar_shaped(),
                                                   results["bf16_tflops"])
    print(f"   {r['seeds']} seeds vmapped, bfloat16, batch 128: "
          f"{r['images_per_s']:10.0f} images/s, {r['tflops']:.2f} TFLOP/s = "
          f"{100 * r['fraction_of_bf16_peak']:.1f}% of the bfloat16 ceiling",
          flush=True)
  except Exception as e:  # pylint: disable=broad-except
    results["resnet20_error"] = repr(e)
    print(f"1. ResNet-20 failed: {e!r}", flush=True)
  save()
  variant = None
  if _VARIANTS.value:
    print(f"2. One IMP level's program ({LEVEL_RUNS} runs of LeNet-300-100, "
          f"Adam, batch 60, masks), {_PROBE_STEPS.value} steps per variant:",
          flush=True)
    results["level_variants"] = level_rows(os.path.join(out_dir, "probes.log"))
    variant = fastest_variant(results["level_variants"])
    print(f"   fastest with the default's loss: "
          f"{variant['variant'] if variant else 'none'}", flush=True)
    save()
  if not _SKIP_STUDY.value:
    timeout = _STUDY_TIMEOUT.value
    if _DEADLINE.value:
      timeout = min(timeout, _DEADLINE.value - (time.time() - started) - 60)
    study = run_study(_STUDY_DIR.value or os.path.join(out_dir, "imp_study"),
                      os.path.join(out_dir, "study.log"), variant, timeout)
    study["variant"] = variant["variant"] if variant else "as configured"
    results["lenet_imp_study"] = study
    save()
    print(f"4. LeNet-300-100 IMP study, {_STUDY_LEVELS.value} levels x "
          f"{_STUDY_SEEDS.value} seeds x 3 arms, {_STUDY_STEPS.value} it/level "
          f"({study['trainings']} trainings), variant {study['variant']}:")
    if study["finished"]:
      print(f"   finished in {study['wall_s']:.0f} s "
            f"({study['wall_s'] / 60:.1f} min)")
    else:
      print(f"   cut at {study['wall_s']:.0f} s (exit code "
            f"{study['returncode']}) after levels {study['levels_done']}; "
            f"projected total "
            f"{study.get('projected_total_s', float('nan')):.0f} s; log: "
            f"{os.path.join(out_dir, 'study.log')}")
    if "seconds_per_pruned_level" in study:
      print(f"   {study['seconds_per_pruned_level']:.1f} s per pruned level "
            f"({3 * _STUDY_SEEDS.value} runs x {_STUDY_STEPS.value} steps, evals "
            "included)")
  save()
  print(json.dumps(results, indent=1))


if __name__ == "__main__":
  app.run(main)
