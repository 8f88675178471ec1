"""A field that only some choices read (an optimizer's momentum or betas,
the step schedule's boundaries, a model's widths or depth, the synthetic
data's shape), moved while the chosen one does not read it, is refused
(`validation.check_choices`) instead of recorded in config.json unused.

The tables behind the check are tested against what the builders actually
read, through `validation.ReadRecorder`, and "not read" against the built
thing: changing an unread field must build the same module or optimizer.
"""

import itertools
import re

import jax.numpy as jnp
import numpy as np
import pytest

from jaxunknowns import config_defaults, config_loading, optim, validation
from jaxunknowns.data import DATASETS, datasets
from jaxunknowns.errors import UserError
from jaxunknowns.models import MODELS, create_model
from run_helpers import ROOT, assert_cli_one_line_error

CHOICE_FIELDS = sorted({f for fs in itertools.chain(
    optim.OPTIMIZER_FIELDS.values(), optim.SCHEDULE_FIELDS.values())
                        for f in fs})


def optim_config(**fields):
  c = config_defaults.base_config().optim
  c.update(fields)
  return c


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS.names()))
def test_optimizer_table_is_what_each_optimizer_reads(name):
  assert set(optim.OPTIMIZER_FIELDS) == set(optim.OPTIMIZERS.names())
  recorder = validation.ReadRecorder(optim_config(name=name))
  optim.OPTIMIZERS.get(name)(recorder)
  assert recorder.read & set(CHOICE_FIELDS) == set(
      optim.OPTIMIZER_FIELDS[name])


@pytest.mark.parametrize("name", sorted(optim.SCHEDULES.names()))
def test_schedule_table_is_what_each_schedule_reads(name):
  assert set(optim.SCHEDULE_FIELDS) == set(optim.SCHEDULES.names())
  recorder = validation.ReadRecorder(optim_config(
      schedule=name, boundaries=(5,), warmup_steps=2))
  schedule = optim.learning_rate_schedule(recorder, 10)
  schedule(jnp.asarray(7))  # a schedule may read its fields when called
  assert recorder.read & set(CHOICE_FIELDS) == set(
      optim.SCHEDULE_FIELDS[name])


def first_update(name, **fields):
  params = {"w": jnp.array([1.0, -2.0, 3.0])}
  tx = optim.OPTIMIZERS.get(name)(optim_config(name=name, **fields))
  state = tx.init(params)
  grads = {"w": jnp.array([0.5, 0.25, -1.0])}
  for _ in range(2):
    updates, state = tx.update(grads, state, params)
  return np.asarray(updates["w"])


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS.names()))
def test_a_field_outside_the_table_changes_nothing(name):
  """The independent side: every choice field the table leaves out for this
  optimizer can change without changing its updates."""
  base = first_update(name)
  for field in set(CHOICE_FIELDS) - set(optim.OPTIMIZER_FIELDS[name]):
    if field in ("boundaries", "decay_factor"):
      continue  # schedule fields: not the direction's
    value = {"momentum": 0.5, "b1": 0.5, "b2": 0.5, "eps": 0.5}[field]
    np.testing.assert_array_equal(first_update(name, **{field: value}), base)


def model_config(**fields):
  c = config_defaults.base_config().model
  c.update(fields)
  return c


SHAPE_FIELDS = {"widths": (7, 5), "width": 4, "depth": 14,
                "width_multiplier": 0.5, "use_bias": False, "shortcut": False}


@pytest.mark.parametrize("name", sorted(MODELS.names()))
def test_a_model_field_not_read_builds_the_same_module(name):
  """model_fields_read says what the builder reads; each shape field it
  does not read, changed, builds an equal module (and the read ones a
  different one, where the field has a say)."""
  base = model_config(name=name, **{"residual_mlp": {"widths": (6, 6)},
                                    "vgg": {"depth": 11}}.get(name, {}))
  read = validation.model_fields_read(base)
  assert read is not None and "name" in read
  module = create_model(base, 3)
  for field, value in SHAPE_FIELDS.items():
    changed = model_config(**{**base.to_dict(), field: value})
    try:
      other = create_model(changed, 3)
    except UserError:
      assert field in read  # refused by the builder: it reads the field
      continue
    if field not in read:
      assert other == module, (name, field)
    else:
      assert other != module, (name, field)


def test_model_reads_match_the_registry_by_hand():
  """An independent list for the models researchers use most."""
  for name, reads, ignores in (
      ("mlp", {"widths"}, {"width", "depth", "shortcut", "use_bias"}),
      ("lenet_300_100", set(), {"widths", "width", "depth"}),
      ("resnet", {"width", "depth", "shortcut"}, {"widths", "use_bias"}),
      ("linear", {"use_bias", "kernel_init"},
       {"widths", "width", "depth", "dropout", "norm"}),
      ("vgg16", {"width_multiplier"}, {"widths", "width", "shortcut"})):
    read = validation.model_fields_read(model_config(name=name))
    assert reads <= read and not ignores & read, (name, read)


class DataView:
  """config.data whose `synthetic` section is read through a recorder."""

  def __init__(self, data, recorder):
    self._data, self._recorder = data, recorder

  def get(self, key, default=None):
    return self._recorder if key == "synthetic" else self._data.get(
        key, default)

  def __getattr__(self, key):
    return self.get(key) if key == "synthetic" else getattr(self._data, key)


@pytest.mark.parametrize("name", sorted(datasets.SYNTHETIC_FIELDS))
def test_synthetic_table_is_what_each_generator_reads(name):
  data = config_defaults.base_config().data
  data.name = name
  recorder = validation.ReadRecorder(data.synthetic)
  DATASETS.get(name)(DataView(data, recorder))
  assert recorder.read == set(datasets.SYNTHETIC_FIELDS[name])


def train_config(**overrides):
  return config_loading.load_config(
      f"{ROOT}/configs/train.py:mnist1d_mlp,runlocal", overrides)


@pytest.mark.parametrize("overrides, needle", [
    ({"optim.momentum": 0.5}, "optim.momentum=0.5 is unused here"),
    ({"optim.name": "momentum", "optim.b2": 0.9}, "optim.b2"),
    ({"optim.boundaries": (5,)}, "optim.schedule 'step'"),
    ({"optim.schedule": "cosine", "optim.decay_factor": 0.5},
     "optim.decay_factor"),
    ({"model.width": 64}, "model.width=64 is unused here"),
    ({"model.depth": 56}, "model.depth"),
    # A variant's (here runlocal's) MLP widths, unused by the ResNet asked
    # for on the command line, would be recorded: reset them too.
    ({"model.name": "resnet"}, r"model.widths=\(32, 32\) is unused"),
    ({"data.synthetic.dim": 5}, "data.name 'synthetic'"),
    # losses.py's mse and exponential losses drop the smoothing.
    ({"train.loss": "mse", "train.label_smoothing": 0.1},
     "train.label_smoothing=0.1 is unused here.*'mse'"),
    ({"train.loss": "exponential", "train.label_smoothing": 0.1},
     "train.label_smoothing"),
    # A norm's own fields, under a norm that does not read them (the MLP's
    # default norm is none).
    ({"model.norm_position": "after"},
     "model.norm_position='after' is unused here.*not model.norm 'none'"),
    ({"model.bn_scale_init": "uniform"}, "model.bn_scale_init"),
    ({"model.norm": "batch", "model.num_groups": 4},
     "model.num_groups=4 is unused here: it applies to 'group' norms"),
    ({"train.eval_train": False, "train.max_train_eval": 100},
     "train.max_train_eval=100 is unused here: it applies only with "
     "train.eval_train=True"),
])
def test_a_field_the_choice_does_not_read_is_refused(overrides, needle):
  with pytest.raises(UserError, match=needle):
    validation.check_config(train_config(**overrides))


@pytest.mark.parametrize("overrides", [
    {"optim.name": "momentum", "optim.momentum": 0.5},
    {"optim.name": "nesterov", "optim.momentum": 0.5},
    {"optim.b2": 0.99, "optim.eps": 1e-6},
    {"optim.schedule": "step", "optim.boundaries": (5,),
     "optim.decay_factor": 0.5},
    {"model.widths": (8,)},
    # runlocal moved the MLP's widths: back to the default for a ResNet.
    {"model.name": "resnet", "model.width": 4, "model.depth": 8,
     "model.widths": (100, 100)},
    {"data.name": "synthetic", "data.synthetic.dim": 5},
    {"data.name": "soudry2d", "data.synthetic.num_test": 50},
    {"train.label_smoothing": 0.1},
    {"model.norm": "batch", "model.norm_position": "after",
     "model.bn_scale_init": "uniform"},
    {"model.norm": "group", "model.num_groups": 4},
    {"train.max_train_eval": 100},
])
def test_a_field_the_choice_reads_passes(overrides):
  validation.check_config(train_config(**overrides))


def test_cli_refuses_momentum_of_adam_before_writing(tmp_path):
  assert_cli_one_line_error(
      ["--config=configs/train.py:mnist1d_mlp,runlocal",
       "--config.optim.momentum=0.5"], tmp_path / "w", "optim.momentum")


def test_max_margin_momentum_applies_to_its_own_optimizers():
  """max_margin's optimizers read optim.momentum and the betas themselves:
  optim.name is not the judge there, max_margin.optimizers is."""
  path = f"{ROOT}/configs/max_margin.py:soudry2d,runlocal"
  validation.check_config(config_loading.load_config(
      path, {"optim.momentum": 0.5}))
  with pytest.raises(UserError, match="optim.momentum"):
    validation.check_config(config_loading.load_config(
        path, {"optim.momentum": 0.5, "max_margin.optimizers": ("gd",)}))
  with pytest.raises(UserError, match="optim.b1"):
    validation.check_config(config_loading.load_config(
        path, {"optim.b1": 0.5, "max_margin.optimizers": ("gd", "sgd")}))
  # Its own float64 loop: the shared trainer's fields would be unused.
  for field, value in (("train.precision", "bfloat16"), ("optim.lr", 0.5),
                       ("train.unroll", 4), ("train.eval_every", 100),
                       ("data.augment", "crop_flip"), ("optim.sam_rho", 0.05)):
    with pytest.raises(UserError, match=f"{field}=.* is unused here"):
      validation.check_config(config_loading.load_config(
          path, {field: value}))


@pytest.mark.parametrize("overrides, needle", [
    ({"optim.sam_eta": 0.1}, "optim.sam_eta=0.1 is unused here"),
    ({"optim.sam_rho": 0.05, "optim.sam_eta": 0.1}, "optim.sam_adaptive"),
    ({"data.source_dir": "/tmp"},
     "data.name 'fashion_mnist' or 'idx', not 'mnist1d'"),
    ({"data.name": "synthetic", "data.data_dir": "/tmp/tfds"},
     "not the generated 'synthetic'"),
])
def test_sam_eta_without_asam_and_source_dir_without_idx_are_refused(
    overrides, needle):
  with pytest.raises(UserError, match=needle):
    validation.check_config(train_config(**overrides))
  validation.check_config(train_config(**{  # where they are read
      "optim.sam_rho": 0.05, "optim.sam_adaptive": True, "optim.sam_eta": 0.1}))


def test_sam_experiment_judges_eta_by_its_asam_arm():
  path = f"{ROOT}/configs/sam.py:runlocal"
  validation.check_config(config_loading.load_config(
      path, {"optim.sam_eta": 0.1}))  # compare has 'asam'
  with pytest.raises(UserError, match="optim.sam_eta"):
    validation.check_config(config_loading.load_config(
        path, {"optim.sam_eta": 0.1, "compare": ("sgd", "sam")}))


def test_only_the_idx_datasets_read_source_dir():
  """The table against the loaders: an unreadable source_dir fails the
  datasets that read it and no other."""
  offline = ("mnist1d", "digits", "synthetic", "soudry2d", "fashion_mnist",
             "idx")  # the rest are TFDS's catalogue: no source_dir
  assert set(datasets.DATASETS.names()) - set(offline) == set(
      datasets.CATALOGUE_ALIASES)
  for name in offline:
    data = config_defaults.base_config().data
    data.name, data.source_dir = name, "/nonexistent/idx"
    data.train_size = 0
    try:
      DATASETS.get(name)(data)
      read = False
    except UserError as e:
      read = "/nonexistent/idx" in str(e)
    assert read == (name in datasets.SOURCE_DIR_DATASETS), name


def test_width_sweep_refuses_the_width_its_stages_set():
  """Each stage sets the model's width from sweep.widths: a width given to
  the base model, or sweep.depth for a model that is no MLP, is unused."""
  for path, overrides, needle in (
      ("width_sweep.py:mnist1d", {"model.widths": (64, 64)}, "model.widths"),
      ("double_descent.py:mnist1d_cnn", {"model.width_multiplier": 2.0},
       "model.width_multiplier"),
      ("double_descent.py:mnist1d_cnn", {"sweep.depth": 3}, "sweep.depth")):
    with pytest.raises(UserError, match=f"{needle}=.* is unused here"):
      validation.check_config(config_loading.load_config(
          f"{ROOT}/configs/{path}", overrides))
  validation.check_config(config_loading.load_config(
      f"{ROOT}/configs/width_sweep.py:mnist1d", {"sweep.depth": 3}))


@pytest.mark.parametrize("spec", ["width_sweep.py:fashion_full",
                                  "width_sweep.py:mnist1d,runlocal"])
def test_a_fixed_budget_keeps_the_variants_own_check_every(spec):
  """fashion_full checks the stopping rule every 2000 steps (runlocal: 20):
  --config.sweep.stop_train_loss=0 (a fixed budget) was refused as
  'sweep.check_every=2000 is unused', a value the user never gave."""
  validation.check_config(config_loading.load_config(
      f"{ROOT}/configs/{spec}", {"sweep.stop_train_loss": 0.0}))


def test_the_files_own_values_are_left_alone_on_the_command_line(tmp_path):
  """--config.model.name=resnet on an MLP variant: the variant's (here
  runlocal's) widths are the file's, not the user's, so the command line
  (which knows the file) accepts it; a config built in code cannot tell
  them apart and asks for them back at the default."""
  spec = f"{ROOT}/configs/train.py:mnist1d_mlp,runlocal"
  config = config_loading.load_config(spec, {"model.name": "resnet"})
  validation.check_config(config, validation.references_of(spec))
  with pytest.raises(UserError, match="model.widths"):
    validation.check_config(config)


@pytest.mark.parametrize("spec,overrides,needle,passes", [
    # The stability variant's levels, given to a variant whose study is
    # off; on the stability variant they are its own.
    ("imp.py:mnist1d", {"stability.levels": (4, 8)},
     r"stability.levels=\(4, 8\) is unused here",
     ("imp.py:stability", {"stability.levels": (4, 8)})),
    # fashion_resnet's depth, given to the MLP variant (check_choices).
    ("bn_stability.py:fashion_mlp", {"model.depth": 8},
     "model.depth=8 is unused here",
     ("bn_stability.py:fashion_resnet", {"model.depth": 8})),
    # cifar10's mse grid, given to mnist1d with mse left out (the
    # experiment's own rule); mnist1d's own grid may stay.
    ("edge_of_stability.py:mnist1d",
     {"eos.losses": ("cross_entropy",), "eos.lrs.mse": (0.04, 0.02, 0.01)},
     r"eos.lrs.mse=\(0.04, 0.02, 0.01\) is out of range: must be \(\)",
     ("edge_of_stability.py:mnist1d", {"eos.losses": ("cross_entropy",)})),
])
def test_another_variants_value_is_the_users(spec, overrides, needle, passes):
  """Only the chosen variant's own values are the file's: the same value
  from another variant of the file is the user's, unused here, and was
  recorded in config.json as if it had trained something. `passes`: the
  value where it is a variant's own."""
  spec = f"{ROOT}/configs/{spec}"
  with pytest.raises(UserError, match=needle):
    validation.check_config(config_loading.load_config(spec, overrides),
                            validation.references_of(spec))
  owner, own = f"{ROOT}/configs/{passes[0]}", passes[1]
  validation.check_config(config_loading.load_config(owner, own),
                          validation.references_of(owner))


@pytest.mark.parametrize("spec,overrides,needle", [
    # Arms or cells set model.norm: a norm's field is judged by their norms,
    # not by the base config's (registered own_fields).
    ("bn_smoothness.py:runlocal", {"model.noise_mean_std": 0.3}, None),
    ("bn_smoothness.py:runlocal", {"model.noise_mean_std": 0.3,
                                   "smoothness.arms": ("none", "batch")},
     "model.noise_mean_std=0.3 is unused here: it applies to 'noisy_batch'"),
    ("bn_batch_size.py:runlocal", {"model.num_groups": 4}, None),
    ("bn_stability.py:runlocal", {"model.num_groups": 2},
     "model.num_groups=2 is unused here: it applies to 'group' norms, not "
     "grid.norms=('none', 'batch')"),
    ("hessian_spectrum.py:runlocal", {"model.bn_scale_init": "uniform"},
     None),
    ("hessian_spectrum.py:runlocal", {"model.num_groups": 4},
     "not the arms' norms ('none', 'batch')"),
    ("landscape.py:runlocal", {"model.bn_scale_init": "uniform"},
     "not the arms' norms ('none',)"),
])
def test_norm_fields_of_arms_and_cells_are_judged_by_their_norms(
    spec, overrides, needle):
  spec = f"{ROOT}/configs/{spec}"
  config = config_loading.load_config(spec, overrides)
  refs = validation.references_of(spec)
  if needle is None:
    validation.check_config(config, refs)
  else:
    with pytest.raises(UserError, match=re.escape(needle)):
      validation.check_config(config, refs)


@pytest.mark.parametrize("data, read", [
    ({}, False), ({"name": "digits"}, False),
    ({"validation_size": 100}, True), ({"label_noise": 0.2}, True),
    ({"randomization": "shuffled_pixels"}, True),
    ({"name": "synthetic"}, True), ({"name": "soudry2d"}, True)])
def test_shuffle_seed_is_refused_exactly_where_it_changes_no_data(data, read):
  """data.shuffle_seed=5 was recorded and silently unused on clean data
  with no validation split. Judged against the data itself: another seed
  must load other arrays exactly where the check says it is read."""
  from jaxunknowns.data import load_dataset  # pylint: disable=g-import-not-at-top
  config = train_config(**{f"data.{k}": v for k, v in data.items()})
  config.data.train_size = 0 if "name" in data else 1000
  loaded = []
  for seed in (0, 5):
    config.data.shuffle_seed = seed
    ds = load_dataset(config.data)
    loaded.append([a for s in (ds.train, ds.validation, ds.test) if s
                   for a in (s.x, s.y)])
  changed = any(a.shape != b.shape or not np.array_equal(a, b)
                for a, b in zip(*loaded))
  assert validation.shuffle_seed_read(config.data) == read == changed
  if not read:
    with pytest.raises(UserError, match="data.shuffle_seed=5 is unused here"):
      validation.check_config(config)
  else:
    validation.check_config(config)


def test_width_sweep_reads_shuffle_seed_only_with_label_noise():
  """The sweep sets each stage's noise (sweep.label_noise), so the check on
  data.* alone would refuse the seed of its noisy stages."""
  def config(noise):
    return config_loading.load_config(
        f"{ROOT}/configs/width_sweep.py:runlocal",
        {"data.shuffle_seed": 5, "sweep.label_noise": noise})
  validation.check_config(config((0.0, 0.2)))
  with pytest.raises(UserError, match="sweep.label_noise"):
    validation.check_config(config((0.0,)))


# Fields only some arms or optimizers read, moved where none chosen does
# (found by a bad-input probe: each was recorded in config.json unused).
NOT_READ_BY_THE_CHOICE = [
    ("sharpness.py:fashion_lenet,runlocal", {"hessian.every": 7},
     "hessian.every=7 is unused here"),
    # Lanczos runs hessian.num_steps steps: no tolerance stops it.
    ("sharpness.py:fashion_lenet,runlocal", {"hessian.tol": 0.5},
     "hessian.tol=0.5 is unused here: it applies to hessian.method='power'"),
    ("sharpness.py:fashion_lenet,runlocal",
     {"compare": ("small_batch",), "arms.large_batch.train.batch_size": 50},
     "arms.large_batch.train.batch_size=50 is unused here: it applies only "
     "with 'large_batch' in compare"),
    ("hessian_spectrum.py:fashion_lenet,runlocal",
     {"compare": ("without_bn",), "spectrum.bn_modes": ("batch",)},
     "spectrum.bn_modes=('batch',) is unused here: it applies only to an arm "
     "with BatchNorm"),
    ("hessian_spectrum.py:fashion_lenet,runlocal",
     {"compare": ("without_bn",), "arms.with_bn.model.norm": "group"},
     "arms.with_bn.model.norm='group' is unused here"),
    ("landscape.py:batch_size,runlocal",
     {"landscape.interpolation": "none", "landscape.points_interp": 7},
     "landscape.points_interp=7 is unused here"),
    ("landscape.py:batch_size,runlocal",
     {"landscape.interpolation": "none",
      "landscape.range_interp": (-0.25, 1.25)}, "landscape.range_interp="),
    ("max_margin.py:soudry2d,runlocal",
     {"max_margin.optimizers": ("gd",), "train.batch_size": 4},
     "train.batch_size=4 is unused here: it applies to 'sgd'"),
    ("max_margin.py:soudry2d,runlocal",
     {"max_margin.optimizers": ("gd",),
      "max_margin.momentum_same_clock": False},
     "max_margin.momentum_same_clock=False is unused here"),
    ("max_margin.py:soudry2d,runlocal",
     {"max_margin.optimizers": ("gd", "sgd"), "max_margin.adam_lr": 0.5},
     "max_margin.adam_lr=0.5 is unused here"),
    ("max_margin.py:soudry2d,runlocal",
     {"max_margin.optimizers": ("adam",), "max_margin.lr": 0.5},
     "max_margin.lr=0.5 is unused here"),
    ("bn_only.py:fashion,runlocal",
     {"bn_only.arms": ("bn",), "bn_only.output_pattern": "^Dense_"},
     "bn_only.output_pattern='^Dense_' is unused here"),
    ("bn_only.py:fashion,runlocal",
     {"bn_only.arms": ("bn", "output"), "bn_only.per_channel": 5},
     "bn_only.per_channel=5 is unused here: it applies to 'random2' of "
     "bn_only.arms"),
    ("bn_only.py:fashion,runlocal",
     {"bn_only.arms": ("full",), "bn_only.bn_pattern": "scale"},
     "bn_only.bn_pattern='scale' is unused here"),
]


@pytest.mark.parametrize("spec, overrides, needle", NOT_READ_BY_THE_CHOICE)
def test_a_field_no_chosen_arm_or_optimizer_reads_is_refused(
    spec, overrides, needle):
  spec = f"{ROOT}/configs/{spec}"
  with pytest.raises(UserError, match=re.escape(needle)):
    validation.check_config(config_loading.load_config(spec, overrides),
                            validation.references_of(spec))


@pytest.mark.parametrize("spec, overrides", [
    ("sharpness.py:fashion_lenet,runlocal",
     {"arms.large_batch.train.batch_size": 500}),
    ("landscape.py:batch_size,runlocal", {"landscape.points_interp": 9}),
    ("max_margin.py:soudry2d,runlocal",
     {"max_margin.optimizers": ("gd", "sgd"), "train.batch_size": 4,
      "max_margin.lr": 0.5}),
    ("max_margin.py:soudry2d,runlocal",
     {"max_margin.optimizers": ("momentum", "adam"), "max_margin.adam_lr": 0.5,
      "max_margin.momentum_same_clock": False}),
    ("bn_only.py:fashion,runlocal",
     {"bn_only.arms": ("bn", "random2"), "bn_only.per_channel": 1}),
])
def test_the_same_fields_pass_where_a_chosen_one_reads_them(spec, overrides):
  spec = f"{ROOT}/configs/{spec}"
  validation.check_config(config_loading.load_config(spec, overrides),
                          validation.references_of(spec))


def test_randomization_refuses_a_shift_its_images_never_get(tmp_path):
  """Image inputs are cropped and flipped in the 'augment' cells: the
  sequences' max_shift was recorded and never read."""
  assert_cli_one_line_error(
      ["--config=configs/randomization.py:fashion_mlp,runlocal",
       "--config.ablation.max_shift=3"], tmp_path / "w", "ablation.max_shift")
