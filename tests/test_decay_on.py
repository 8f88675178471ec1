"""optim.decay_on: which parameters weight decay touches.

* The normalized kernels of known models, by hand: a BN MLP's hidden
  kernels (not its output kernel, biases or γ/β), every conv kernel of a
  BN ResNet but the output layer's; none without a norm or with BN after
  the ReLU (a bias between kernel and norm breaks the invariance).
* Each optimizer's directions against numpy's update formulas
  (test_trainer.numpy_directions) with the decay on the chosen leaves only,
  also under optim.freeze and the masked-update transform; one SGD step of
  the trainer moves exactly the chosen leaves by -lr·wd·p more.
* The default builds the very transform it did before.
* Bad input: one line, nothing written.
* bn_regularization's report words the protocol key "decay on" after the
  run's setting, and a 'normalized' run matches van Laarhoven's.
"""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import traverse_util

from jaxunknowns import optim
from jaxunknowns.batchnorm import bn_report, papers
from jaxunknowns.data import Dataset, Split
from jaxunknowns.errors import UserError
from jaxunknowns.models import create_model
from jaxunknowns.trainer import Trainer
from run_helpers import ROOT, assert_cli_one_line_error
from test_trainer import numpy_directions, tiny_config, tiny_dataset

HIDDEN = ["Dense_0/kernel", "Dense_1/kernel"]


def bn_mlp_config(**overrides):
  return tiny_config(**{"model.widths": (16, 8), **overrides})


def trainer_of(config, dataset=None):
  dataset = dataset or tiny_dataset()
  return Trainer(config, dataset, create_model(config.model,
                                               dataset.num_classes))


def chosen(decay_on, path):
  """The leaves each setting decays, written out for the BN MLP."""
  return {"all": True, "kernels": path.endswith("/kernel"),
          "normalized": path in HIDDEN}[decay_on]


# ---- Which kernels are normalized ----
def test_a_bn_mlp_has_exactly_its_hidden_kernels_normalized():
  trainer = trainer_of(bn_mlp_config(**{"optim.decay_on": "normalized"}))
  assert trainer.normalized_kernels == HIDDEN
  assert "output/kernel" in optim.param_paths(trainer.params_template)


def test_a_bn_resnet_has_every_conv_kernel_but_the_output_normalized():
  config = tiny_config(**{"model.name": "resnet", "model.depth": 8,
                          "model.width": 4, "optim.decay_on": "normalized",
                          "train.batch_size": 16})
  rng = np.random.default_rng(0)
  images = Split(x=rng.normal(size=(32, 8, 8, 3)).astype(np.float32),
                 y=rng.integers(0, 3, 32).astype(np.int32))
  dataset = Dataset(name="images", train=images, test=images,
                    validation=None, num_classes=3, input_shape=(8, 8, 3))
  trainer = trainer_of(config, dataset)
  paths = optim.param_paths(trainer.params_template)
  convs = [p for p in paths if p.endswith("/kernel") and p != "output/kernel"]
  assert len(convs) == 9 and sorted(trainer.normalized_kernels) == convs


@pytest.mark.parametrize("overrides", [
    {"model.norm": "none"},
    # ReLU then BN: the hidden bias sits between kernel and norm.
    {"model.norm_position": "after"}])
def test_no_normalized_kernel_is_a_user_error(overrides):
  with pytest.raises(UserError, match="no kernel of this model"):
    trainer_of(bn_mlp_config(**{"optim.decay_on": "normalized",
                                **overrides}))


def test_zero_initialized_kernels_of_a_net_without_norm_are_not_normalized():
  """Doubling a zero kernel changes nothing: the probe moves kernels off
  their init first, so a net without a norm still has none."""
  with pytest.raises(UserError, match="no kernel of this model"):
    trainer_of(bn_mlp_config(**{"optim.decay_on": "normalized",
                                "model.norm": "none",
                                "model.kernel_init": "zeros"}))


@pytest.mark.parametrize("batch_size", [2, 8, 32])
def test_the_probe_does_not_depend_on_the_batch_size(batch_size):
  """Group norm with a per-unit bias before it keeps no kernel
  scale-invariant; a probe on a batch of 2 once found some (its statistics
  over 2 examples undo more than they do on real batches)."""
  config = bn_mlp_config(**{"optim.decay_on": "normalized",
                            "model.norm": "group", "model.num_groups": 4,
                            "train.batch_size": batch_size})
  with pytest.raises(UserError, match="no kernel of this model"):
    trainer_of(config)


# ---- The update, against numpy ----
def leaf_directions(config, params, grads, normalized, wrap=lambda tx: tx):
  """{path: [direction at each step]} of config.optim's transform."""
  tx = wrap(optim.create_optimizer(config.optim, params, normalized))
  state, out = tx.init(params), []
  for g in grads:
    d, state = tx.update(g, state, params)
    out.append({"/".join(k): np.asarray(v)
                for k, v in traverse_util.flatten_dict(d).items()})
    params = jax.tree.map(lambda p, u: p - 0.1 * u, params, d)
  return {k: [step[k] for step in out] for k in out[0]}


def random_grads(params, steps=3, seed=1):
  rng = np.random.default_rng(seed)
  return [jax.tree.map(lambda p: jnp.asarray(
      rng.normal(size=p.shape).astype(np.float32)), params)
          for _ in range(steps)]


@pytest.mark.parametrize("decay_on", ["all", "kernels", "normalized"])
@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam",
                                  "adamw"])
def test_each_optimizer_decays_only_the_chosen_leaves(name, decay_on):
  wd = 0.05
  config = bn_mlp_config(**{"optim.name": name, "optim.weight_decay": wd,
                            "optim.decay_on": decay_on})
  params = trainer_of(config).init_one(jax.random.PRNGKey(3))["params"]
  grads = random_grads(params)
  got = leaf_directions(config, params, grads, HIDDEN)
  flat = traverse_util.flatten_dict(params)
  for key, p in flat.items():
    path = "/".join(key)
    want = numpy_directions(
        name, np.asarray(p), [np.asarray(traverse_util.flatten_dict(g)[key])
                              for g in grads], wd * chosen(decay_on, path))
    np.testing.assert_allclose(got[path], want, rtol=2e-5, atol=1e-6,
                               err_msg=path)


@pytest.mark.parametrize("name", ["momentum", "adamw"])
def test_frozen_and_masked_entries_get_no_decay(name):
  """optim.freeze (optax.partition) and the masked-update transform: a
  frozen leaf or masked entry does not move; the other chosen leaves decay."""
  wd = 0.05
  config = bn_mlp_config(**{"optim.name": name, "optim.weight_decay": wd,
                            "optim.decay_on": "kernels",
                            "optim.freeze": "Dense_0"})
  params = trainer_of(config).init_one(jax.random.PRNGKey(3))["params"]
  grads = random_grads(params)
  mask = jax.tree.map(lambda p: jnp.arange(p.size).reshape(p.shape) % 2 == 0,
                      params)
  got = leaf_directions(config, params, grads, None,
                        lambda tx: optim.with_update_mask(tx, mask))
  flat_mask = {"/".join(k): np.asarray(m)
               for k, m in traverse_util.flatten_dict(mask).items()}
  for key, p in traverse_util.flatten_dict(params).items():
    path = "/".join(key)
    want = np.asarray(numpy_directions(
        name, np.asarray(p) * flat_mask[path],
        [np.asarray(traverse_util.flatten_dict(g)[key]) * flat_mask[path]
         for g in grads], wd * chosen("kernels", path)))
    if path.startswith("Dense_0/"):
      want = np.zeros_like(want)
    np.testing.assert_allclose(np.asarray(got[path]) * flat_mask[path],
                               want * flat_mask[path], rtol=2e-5, atol=1e-6,
                               err_msg=path)
    assert not np.any(np.asarray(got[path])[:, ~flat_mask[path]]), path


@pytest.mark.parametrize("decay_on", ["all", "normalized"])
def test_one_trainer_step_decays_the_chosen_leaves_by_lr_wd_p(decay_on):
  """The trainer's own SGD step (its probe's kernels, its optimizer): the
  step with decay minus the step without is -lr·wd·p on the chosen leaves,
  exactly zero on the others."""
  lr, wd = 0.05, 0.01
  steps = {}
  for w in (0.0, wd):
    config = bn_mlp_config(**{"optim.name": "sgd", "optim.weight_decay": w,
                              "optim.decay_on": decay_on})
    trainer = trainer_of(config)
    state = jax.tree.map(lambda a: a[0], trainer.init_state([0]))
    x, y = trainer.dataset.train.x[:32], trainer.dataset.train.y[:32]
    new, _ = trainer.train_step(state, jnp.asarray(x), jnp.asarray(y))
    steps[w] = traverse_util.flatten_dict(new["params"])
  p0 = traverse_util.flatten_dict(state["params"])
  for key, p in p0.items():
    path = "/".join(key)
    diff = np.asarray(steps[wd][key], np.float64) - np.asarray(
        steps[0.0][key], np.float64)
    if chosen(decay_on, path):
      np.testing.assert_allclose(diff, -lr * wd * np.asarray(p, np.float64),
                                 rtol=1e-3, atol=2e-8, err_msg=path)
    else:
      np.testing.assert_array_equal(diff, 0.0, err_msg=path)


def test_the_default_builds_the_decay_it_always_did():
  """decay_on 'all' is optax's unmasked add_decayed_weights: the same
  state (no MaskedState) and bit-identical directions as before."""
  config = bn_mlp_config(**{"optim.weight_decay": 0.05})
  params = trainer_of(config).init_one(jax.random.PRNGKey(3))["params"]
  grads = random_grads(params)
  before = optax.chain(optax.add_decayed_weights(0.05),
                       optax.trace(decay=0.9, nesterov=False))
  ours = optim.create_optimizer(config.optim, params)
  assert (jax.tree.structure(ours.init(params))
          == jax.tree.structure(before.init(params)))
  a, b = ours.init(params), before.init(params)
  for g in grads:
    (da, a), (db, b) = ours.update(g, a, params), before.update(g, b, params)
    for x, y in zip(jax.tree.leaves(da), jax.tree.leaves(db)):
      np.testing.assert_array_equal(x, y)


# ---- Bad input ----
MLP = "configs/train.py:mnist1d_mlp,runlocal"


@pytest.mark.parametrize("config,flags,needle", [
    (MLP, ["--config.optim.decay_on=weights",
           "--config.optim.weight_decay=0.01"],
     "optim.decay_on='weights' is out of range: must be one of 'all', "
     "'kernels', 'normalized'"),
    (MLP, ["--config.optim.decay_on=kernels"],
     "optim.decay_on='kernels' is unused here: it applies only where weight "
     "decay is used"),
    (MLP, ["--config.optim.decay_on=normalized",
           "--config.optim.weight_decay=0.01"],
     "optim.decay_on='normalized': no kernel of this model"),
    ("configs/max_margin.py:runlocal", ["--config.optim.decay_on=normalized",
                                        "--config.optim.weight_decay=0.01"],
     "no norm follows a linear model's kernel"),
    # Grids: a cell whose norm keeps no kernel scale-invariant is refused
    # before the workdir opens, not when that cell starts training.
    ("configs/bn_placement.py:runlocal", [
        "--config.optim.decay_on=normalized",
        "--config.optim.weight_decay=0.001"],
     "grid cell norm=batch, position=after: optim.decay_on='normalized'"),
    ("configs/bn_batch_size.py:runlocal", [
        "--config.optim.decay_on=normalized",
        "--config.optim.weight_decay=0.001"],
     "group norm before the activation leaves none"),
    # A weight decay set for cells or arms that do not run is no decay.
    ("configs/randomization.py:runlocal", [
        "--config.ablation.true_labels=('dropout',)",
        "--config.ablation.random_labels=()",
        "--config.optim.decay_on=kernels"],
     "optim.decay_on='kernels' is unused here"),
    ("configs/memorization.py:runlocal", [
        "--config.memorization.arms=('none','dropout')",
        "--config.optim.decay_on=kernels"],
     "optim.decay_on='kernels' is unused here"),
])
def test_bad_decay_on_is_one_line_and_exit_2(tmp_path, config, flags, needle):
  assert_cli_one_line_error([f"--config={config}", *flags], tmp_path / "run",
                            needle)


# ---- bn_regularization's report ----
RESULTS = ROOT / "docs" / "results" / "bn_regularization"


def van_laarhoven_row(decay_on):
  """The van Laarhoven row of the committed run's summary with the BN gap
  at wd 5e-3 raised 5 points (the row then differs and gives its
  reasons), under `decay_on` (None: a config from before the field)."""
  config = ml_collections.ConfigDict(json.loads(
      (RESULTS / "config.json").read_text()))
  if decay_on is not None:
    config.optim.decay_on = decay_on
  summary = json.loads((RESULTS / "summary.json").read_text())
  for cell in summary["cells"]:
    if cell["cell"] == {"norm": "batch", "dropout": 0.0,
                        "weight_decay": 0.005}:
      cell["gap"] = {k: (v + 0.05 if k == "mean" else
                         [s + 0.05 for s in v] if k == "per_seed" else v)
                     for k, v in cell["gap"].items()}
  rows = bn_report.regularization(summary, config, {})
  row, = [r for r in rows if r.source == papers.DECAY_WITH_BN.source]
  assert row.verdict == "differs"
  return row


@pytest.mark.parametrize("decay_on,words", [
    (None, "every parameter"), ("all", "every parameter"),
    ("kernels", "every kernel")])
def test_the_report_says_what_the_run_decayed(decay_on, words):
  reasons = van_laarhoven_row(decay_on).reasons
  assert (f"decay on: the kernels a norm follows in the paper, {words} here"
          in reasons), reasons


def test_a_normalized_run_decays_what_van_laarhoven_decays():
  assert papers.DECAY_WITH_BN.protocol["decay on"] == optim.DECAY_ON[
      "normalized"]
  assert not any(r.startswith("decay on")
                 for r in van_laarhoven_row("normalized").reasons)
