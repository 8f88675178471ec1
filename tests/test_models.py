"""Tests of the model zoo: shapes, modes, names, parameter counts, options.

Compiling `module.init` (one random draw per parameter) is by far the slowest
step on a CPU, so most tests trace init abstractly (`jax.eval_shape`: shapes
and names, no compile) and run the forward pass on numpy-filled variables;
the tests of initialization itself run the real `init`, with "rbg" keys,
which compile much faster on CPU than the default threefry.
"""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunknowns.config_defaults import base_config
from jaxunknowns.errors import UserError
from jaxunknowns.models import MODELS, create_model, layers

NUM_CLASSES = 7


def key(seed):
  return jax.random.key(seed, impl="rbg")


def model_config(name, **overrides):
  cfg = base_config().model
  cfg.name = name
  with cfg.unlocked():  # Some fields are read with cfg.get (width_multiplier).
    for field, value in overrides.items():
      cfg[field] = value
  return cfg


def build(name, num_classes=NUM_CLASSES, **overrides):
  return create_model(model_config(name, **overrides), num_classes)


def abstract_init(module, shape):
  """The variables' shapes and names, traced without compiling."""
  return jax.eval_shape(
      lambda: module.init({"params": key(0), "dropout": key(1)},
                          jnp.zeros(shape), train=False))


def fake_init(module, shape, seed=0):
  """Variables of the right structure filled by numpy: He-scaled kernels,
  small random biases and scales near 1, BN running stats (0, 1)."""
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name, shape = path[-1].key, leaf.shape
    if name == "kernel":
      return jnp.asarray(rng.normal(size=shape) * np.sqrt(
          2.0 / max(1, np.prod(shape[:-1]))), jnp.float32)
    if name == "bias":
      return jnp.asarray(0.1 * rng.normal(size=shape), jnp.float32)
    if name == "scale":
      return jnp.asarray(1.0 + 0.1 * rng.normal(size=shape), jnp.float32)
    if name == "mean":
      return jnp.zeros(shape, jnp.float32)
    assert name == "var", path
    return jnp.ones(shape, jnp.float32)

  return jax.tree_util.tree_map_with_path(fill, abstract_init(module, shape))


def inputs(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed + 1).normal(size=shape),
                     jnp.float32)


def param_count(module, shape):
  variables = abstract_init(module, shape)
  return sum(int(np.prod(p.shape))
             for p in jax.tree_util.tree_leaves(variables["params"]))


def leaf_paths(tree):
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(tree))
  return {"/".join(k): v for k, v in flat.items()}


def eval_fn(module):
  return jax.jit(lambda v, x: module.apply(v, x, train=False))


def train_fn(module):
  return jax.jit(lambda v, x, k: module.apply(
      v, x, train=True, rngs={"dropout": k}, mutable=["batch_stats"]))


# Tiny instances of every registered model, on inputs of the rank it expects.
TINY = [
    ("linear", {}, (3, 10)),
    ("mlp", dict(widths=(8, 6)), (3, 40, 1)),
    ("lenet_300_100", {}, (2, 8, 8, 1)),
    ("residual_mlp", dict(widths=(8, 8, 8)), (3, 40)),
    ("ntk_mlp", dict(widths=(8, 6)), (3, 40, 1)),
    ("fc_tanh", dict(widths=(8, 6)), (3, 40, 1)),
    ("conv2", dict(width_multiplier=1 / 16), (2, 8, 8, 3)),
    ("conv4", dict(width_multiplier=1 / 16), (2, 8, 8, 3)),
    ("conv6", dict(width_multiplier=1 / 16), (2, 8, 8, 3)),
    ("mnist1d_cnn", {}, (3, 40, 1)),
    ("vgg", dict(depth=11, width_multiplier=1 / 16, norm="default"),
     (2, 32, 32, 3)),
    ("vgg11", dict(width_multiplier=1 / 16, norm="batch"), (2, 32, 32, 3)),
    ("vgg13", dict(width_multiplier=1 / 16, norm="batch"), (2, 32, 32, 3)),
    ("vgg16", dict(width_multiplier=1 / 16, norm="batch"), (2, 32, 32, 3)),
    ("vgg19", dict(width_multiplier=1 / 16, norm="batch"), (2, 32, 32, 3)),
    ("resnet", dict(depth=8, width=4, norm="default"), (2, 8, 8, 3)),
]
BN_MODELS = {"vgg", "vgg11", "vgg13", "vgg16", "vgg19", "resnet"}


def test_every_registered_model_has_a_tiny_test():
  assert sorted({name for name, _, _ in TINY}) == MODELS.names()


@pytest.mark.parametrize("name,overrides,shape", TINY,
                         ids=[t[0] for t in TINY])
def test_init_and_apply_shapes(name, overrides, shape):
  module = build(name, **overrides)
  variables = abstract_init(module, shape)
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  logits = jax.eval_shape(lambda v, x: module.apply(v, x, train=False),
                          variables, x)
  assert logits.shape == (shape[0], NUM_CLASSES)
  assert logits.dtype == jnp.float32
  train_logits, state = jax.eval_shape(
      lambda v, x: module.apply(v, x, train=True, rngs={"dropout": key(2)},
                                mutable=["batch_stats"]), variables, x)
  assert train_logits.shape == (shape[0], NUM_CLASSES)
  # BN models (batch norm is their default) carry and update batch_stats.
  assert ("batch_stats" in variables) == (name in BN_MODELS)
  assert ("batch_stats" in state) == (name in BN_MODELS)

  params = variables["params"]
  assert params["output"]["kernel"].shape[-1] == NUM_CLASSES
  # Every leaf is a kernel, a bias or a norm scale.
  names = {path.split("/")[-1] for path in leaf_paths(params)}
  assert names <= {"kernel", "bias", "scale"}
  if name in BN_MODELS:
    assert "scale" in names


NUMERIC = [t for t in TINY if t[0] in ("linear", "mlp", "residual_mlp", "conv4",
                                      "mnist1d_cnn", "vgg11", "resnet")]


@pytest.mark.parametrize("name,overrides,shape", NUMERIC,
                         ids=[t[0] for t in NUMERIC])
def test_output_is_the_final_layer(name, overrides, shape):
  module = build(name, **overrides)
  variables, x = fake_init(module, shape), inputs(shape)
  forward = eval_fn(module)
  logits = forward(variables, x)
  assert np.all(np.isfinite(logits)) and np.std(logits) > 1e-3
  params = flax.core.unfreeze(variables["params"])
  params["output"] = jax.tree_util.tree_map(jnp.zeros_like, params["output"])
  zeroed = forward({**variables, "params": params}, x)
  np.testing.assert_array_equal(zeroed, 0.0)


def test_lenet_300_100_param_count():
  assert param_count(build("lenet_300_100", 10), (1, 28, 28, 1)) == 266_610


@pytest.mark.parametrize("name", ["mlp", "fc_tanh"])
def test_an_mlp_without_hidden_layers_is_a_linear_model(name):
  """widths () is logistic regression: W x + b, (40 + 1) × 10 parameters,
  logits equal to the hand product; a norm or dropout would act on no layer,
  so they are refused (a BatchNorm grid's arms would train one network)."""
  module = build(name, widths=())
  assert param_count(module, (3, 40, 1)) == (40 + 1) * NUM_CLASSES
  x = jax.random.normal(key(2), (3, 40, 1))
  variables = module.init({"params": key(0)}, x, train=False)
  out = variables["params"]["output"]
  np.testing.assert_allclose(
      module.apply(variables, x, train=False),
      np.asarray(x).reshape(3, 40) @ np.asarray(out["kernel"]) + np.asarray(
          out["bias"]), rtol=1e-5, atol=1e-5)
  for field, value in (("norm", "batch"), ("norm", "layer"),
                       ("dropout", 0.1)):
    with pytest.raises(UserError, match=f"model.{field}=.* acts on hidden layers"):
      build(name, widths=(), **{field: value})


def test_resnet20_param_count():
  # 0.27M (He et al. 2016); with 1x1 projection shortcuts + BN as in OpenLTH.
  module = build("resnet", 10, depth=20, norm="batch")
  assert param_count(module, (1, 32, 32, 3)) == 272_474


@pytest.mark.parametrize("name,shape,expected", [
    ("conv2", (1, 32, 32, 3), 4_301_642),     # Frankle & Carbin: 4.3M.
    ("conv4", (1, 32, 32, 3), 2_425_930),     # 2.4M.
    ("vgg16", (1, 32, 32, 3), 14_728_266),    # CIFAR VGG-16 with BN.
    ("mnist1d_cnn", (1, 40, 1), 5_210),       # The MNIST-1D ConvBase.
    ("residual_mlp", (1, 40), 276_010),       # Lottery notebook, width 500.
])
def test_known_param_counts(name, shape, expected):
  module = build(name, 10, norm="default", widths=(500, 500))
  assert param_count(module, shape) == expected


def test_vgg_aliases_match_vgg_by_depth():
  for depth in (11, 13, 16, 19):
    alias = build(f"vgg{depth}", 10, width_multiplier=0.25)
    by_depth = build("vgg", 10, depth=depth, width_multiplier=0.25)
    assert alias == by_depth


def test_mnist1d_cnn_geometry():
  module = build("mnist1d_cnn", 10)
  params = abstract_init(module, (2, 40, 1))["params"]
  assert params["Conv_0"]["kernel"].shape == (5, 1, 25)
  assert params["Conv_1"]["kernel"].shape == (3, 25, 25)
  assert params["Conv_2"]["kernel"].shape == (3, 25, 25)
  assert params["output"]["kernel"].shape == (125, 10)  # 5 positions x 25.
  # A [B, L] input gets a channel axis and gives the same logits.
  variables, x = fake_init(module, (2, 40, 1)), inputs((2, 40))
  np.testing.assert_allclose(module.apply(variables, x, train=False),
                             module.apply(variables, x[..., None], train=False),
                             rtol=1e-6)


def test_conv_models_use_conv1d_on_sequences():
  for name, overrides in [("resnet", dict(depth=8, width=4)),
                          ("conv4", dict(width_multiplier=1 / 16)),
                          ("vgg", dict(depth=11, width_multiplier=1 / 16))]:
    module = build(name, 10, norm="default", **overrides)
    variables = abstract_init(module, (2, 40, 1))
    assert variables["params"]["Conv_0"]["kernel"].shape[:2] == (3, 1), name
    logits = jax.eval_shape(lambda v: module.apply(
        v, jnp.zeros((2, 40, 1)), train=False), variables)
    assert logits.shape == (2, 10)


@pytest.mark.parametrize("name, overrides", [
    ("mnist1d_cnn", {}),                     # flatten: ZeroDivisionError in Dense's init
    ("vgg", dict(depth=11, width_multiplier=1 / 16)),  # global pool: a mean over nothing
])
def test_inputs_too_small_for_the_convolutions_are_a_user_error(name, overrides):
  """2-D points (synthetic, soudry2d) through a conv net: the strided convs
  and pools shrink the length to 0; one UserError naming model.name."""
  module = build(name, 10, **overrides)
  with pytest.raises(UserError, match="model.name: .*too small"):
    abstract_init(module, (2, 2))


def test_batch_norm_train_updates_stats_and_eval_leaves_them():
  module = build("resnet", depth=8, width=4, norm="batch")
  variables = fake_init(module, (4, 8, 8, 3))
  x = inputs((4, 8, 8, 3)) * 3.0 + 2.0  # Far from the running stats (0, 1).
  old = leaf_paths(variables["batch_stats"])

  train_logits, state = train_fn(module)(variables, x, key(0))
  new = leaf_paths(state["batch_stats"])
  assert old.keys() == new.keys() and len(old) == 2 * 9  # 9 BN layers.
  assert all(not np.allclose(old[k], new[k]) for k in old)

  forward = jax.jit(lambda v, x: module.apply(v, x, train=False,
                                              mutable=["batch_stats"]))
  eval_logits, eval_state = forward(variables, x)
  for k, v in leaf_paths(eval_state["batch_stats"]).items():
    np.testing.assert_array_equal(v, old[k])
  # Running averages (0, 1) vs the batch's statistics: different logits.
  assert not np.allclose(train_logits, eval_logits, atol=1e-3)
  # Eval with the updated running stats moves towards train mode.
  moved = forward({**variables, **state}, x)[0]
  assert not np.allclose(moved, eval_logits, atol=1e-4)


def test_batch_norm_momentum_and_epsilon_match_pytorch():
  module = build("mlp", 3, widths=(5,), norm="batch")
  variables, x = fake_init(module, (16, 4)), inputs((16, 4))
  _, inter = module.apply(variables, x, train=True, mutable=["batch_stats",
                                                             "intermediates"],
                          capture_intermediates=True)
  p = variables["params"]
  h = np.asarray(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])
  stats = inter["batch_stats"]["BatchNorm_0"]
  # PyTorch momentum 0.1 (Flax 0.9): new = 0.9 * old + 0.1 * batch.
  np.testing.assert_allclose(stats["mean"], 0.1 * h.mean(0), rtol=1e-4,
                             atol=1e-6)
  np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * h.var(0), rtol=1e-4)
  bn = p["BatchNorm_0"]
  expected = ((h - h.mean(0)) / np.sqrt(h.var(0) + 1e-5) * bn["scale"]
              + bn["bias"])
  np.testing.assert_allclose(
      inter["intermediates"]["BatchNorm_0"]["__call__"][0], expected,
      rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("norm", ["batch", "group", "layer", "none"])
@pytest.mark.parametrize("position", ["before", "after"])
def test_resnet_norm_variants_build(norm, position):
  module = build("resnet", depth=8, width=4, norm=norm, norm_position=position,
                 num_groups=2)
  variables = abstract_init(module, (2, 8, 8, 3))
  logits, state = jax.eval_shape(lambda v: module.apply(
      v, jnp.zeros((2, 8, 8, 3)), train=True, mutable=["batch_stats"]),
                                 variables)
  assert logits.shape == (2, NUM_CLASSES)
  paths = leaf_paths(variables["params"])
  norms = {p.split("/")[-2] for p in paths if "Norm" in p}
  kind = {"batch": "BatchNorm", "group": "GroupNorm", "layer": "LayerNorm"}
  if norm == "none":
    assert not norms
  else:
    assert norms and all(m.startswith(kind[norm]) for m in norms)
  assert bool(state) == (norm == "batch")
  # Convs carry a bias only where no norm directly follows them.
  has_bias = "Conv_0/bias" in paths
  assert has_bias == (norm == "none" or position == "after")
  # Projections keep their own norm only when norms come before the ReLU.
  proj_norm = any(p.startswith("BasicBlock_1/") and p.split("/")[1].endswith(
      "Norm_2") for p in paths)
  assert proj_norm == (norm != "none" and position == "before")


@pytest.mark.parametrize("norm", ["batch", "group", "layer"])
@pytest.mark.parametrize("position", ["before", "after"])
def test_norm_position_numerics(norm, position):
  # The output layer reads the hidden features unchanged (identity kernel),
  # so the logits are the last hidden layer's output.
  module = build("mlp", 8, widths=(8,), norm=norm, norm_position=position,
                 num_groups=2)
  variables = flax.core.unfreeze(fake_init(module, (6, 5)))
  variables["params"]["output"] = {"kernel": jnp.eye(8), "bias": jnp.zeros(8)}
  norm_params = variables["params"][
      {"batch": "BatchNorm_0", "group": "GroupNorm_0",
       "layer": "LayerNorm_0"}[norm]]
  norm_params["scale"] = jnp.ones(8)
  norm_params["bias"] = jnp.zeros(8)
  logits, _ = train_fn(module)(variables, inputs((6, 5)), key(0))
  logits = np.asarray(logits)
  if position == "before":  # ... -> norm -> ReLU: non-negative outputs.
    assert np.all(logits >= 0) and np.any(logits > 0)
  else:  # ... -> ReLU -> norm: normalized outputs.
    assert np.any(logits < 0)
    if norm == "batch":  # Per feature over the batch.
      np.testing.assert_allclose(logits.mean(0), 0.0, atol=1e-5)
    elif norm == "layer":  # Per example over all features.
      np.testing.assert_allclose(logits.mean(1), 0.0, atol=1e-5)
    else:  # Per example within each of 2 groups of 4 features.
      np.testing.assert_allclose(logits.reshape(6, 2, 4).mean(-1), 0.0,
                                 atol=1e-5)


def test_group_norm_clips_and_rejects_non_divisors():
  # 8 groups on 4 channels: clipped to 4 groups of one channel each.
  module = build("mlp", 3, widths=(4,), norm="group", num_groups=8,
                 norm_position="after")
  variables = flax.core.unfreeze(fake_init(module, (2, 5)))
  variables["params"]["GroupNorm_0"] = {"scale": jnp.ones(4),
                                        "bias": jnp.zeros(4)}
  _, inter = module.apply(variables, inputs((2, 5)), train=False,
                          capture_intermediates=True)
  normed = inter["intermediates"]["GroupNorm_0"]["__call__"][0]
  np.testing.assert_allclose(normed, 0.0, atol=1e-6)  # One value per group.
  with pytest.raises(UserError, match="num_groups"):
    build("mlp", 3, widths=(10,), norm="group", num_groups=4)
  with pytest.raises(UserError, match="num_groups"):
    build("resnet", 3, width=6, norm="group", num_groups=4)


def test_resnet_without_shortcut_differs():
  with_sc = build("resnet", depth=8, width=4, norm="batch")
  without = build("resnet", depth=8, width=4, norm="batch", shortcut=False)
  shape = (2, 8, 8, 3)
  # The projections (stages 2 and 3: 1x1 convs 4->8, 8->16 and their BN)
  # are the only parameters that differ.
  assert (param_count(with_sc, shape) - param_count(without, shape)
          == (4 * 8 + 2 * 8) + (8 * 16 + 2 * 16))
  variables, x = fake_init(with_sc, shape), inputs(shape)

  def drop_projections(tree):
    kept = {k: v for k, v in leaf_paths(tree).items()
            if not (k.startswith(("BasicBlock_1/", "BasicBlock_2/"))
                    and ("/Conv_2/" in k or "/BatchNorm_2/" in k))}
    return flax.traverse_util.unflatten_dict(
        {tuple(k.split("/")): v for k, v in kept.items()})

  plain_vars = {c: drop_projections(v) for c, v in variables.items()}
  plain_logits = without.apply(plain_vars, x, train=False)
  assert plain_logits.shape == (2, NUM_CLASSES)
  assert not np.allclose(plain_logits, with_sc.apply(variables, x, train=False),
                         atol=1e-4)


def test_resnet_depth_must_be_6n_plus_2():
  with pytest.raises(UserError, match=r"6n\+2"):
    build("resnet", depth=21)
  assert param_count(build("resnet", depth=14, width=2), (1, 8, 8, 3)) > 0


def test_vgg_depth_must_be_known():
  with pytest.raises(UserError, match="11, 13, 16, 19"):
    build("vgg", depth=12)


def test_unknown_model_lists_valid_names():
  with pytest.raises(UserError) as err:
    build("resnet50")
  message = str(err.value)
  assert "model.name" in message and "\n" not in message
  for name in ("mlp", "resnet", "vgg", "mnist1d_cnn", "lenet_300_100"):
    assert name in message


@pytest.mark.parametrize("field,value,valid", [
    ("norm", "instance", ("batch", "group", "layer", "none")),
    ("norm_position", "middle", ("before", "after")),
    ("kernel_init", "orthogonal", ("kaiming_normal", "glorot_normal",
                                   "lecun_normal")),
    ("bn_scale_init", "zeros", ("ones", "uniform")),
])
def test_unknown_option_lists_valid_values(field, value, valid):
  # A norm's own fields are read under a norm only (the MLP's is none).
  norm = {"norm": "batch"} if field in layers.NORM_FIELDS else {}
  for name in ("mlp", "resnet", "vgg11"):
    with pytest.raises(UserError) as err:
      build(name, **norm, **{field: value})
    message = str(err.value)
    assert f"model.{field}" in message and value in message
    assert "\n" not in message
    assert all(v in message for v in valid)


# ---- Initialization (real init) ---------------------------------------------


def test_bn_scale_init_uniform():
  def gammas(bn_scale_init):
    module = build("mlp", 3, widths=(64, 64), norm="batch",
                   bn_scale_init=bn_scale_init)
    variables = jax.jit(lambda k: module.init(k, jnp.zeros((2, 5)),
                                              train=False))(key(0))
    flat = leaf_paths(variables["params"])
    betas = np.concatenate([v for k, v in flat.items()
                            if "BatchNorm" in k and k.endswith("bias")])
    np.testing.assert_array_equal(betas, 0.0)
    return np.concatenate([v for k, v in flat.items() if k.endswith("scale")])

  g = gammas("uniform")
  assert g.size == 128
  assert np.all((g >= 0) & (g <= 1))
  assert 0.35 < g.mean() < 0.65 and 0.2 < g.std() < 0.38  # U[0,1]: 0.5, 0.29.
  np.testing.assert_array_equal(gammas("ones"), 1.0)


@pytest.mark.parametrize("init_name,std", [
    ("kaiming_normal", np.sqrt(2 / 784)),
    ("glorot_normal", np.sqrt(2 / (784 + 300))),
    ("lecun_normal", np.sqrt(1 / 784)),
])
def test_named_kernel_initializers(init_name, std):
  kernel = np.asarray(layers.kernel_initializer(init_name, "flax_default")(
      key(3), (784, 300)))
  np.testing.assert_allclose(kernel.std(), std, rtol=0.02)
  np.testing.assert_allclose(kernel.mean(), 0.0, atol=std * 0.02)
  # Untruncated Gaussian: 3-sigma tails exist (a 2-sigma truncation has none).
  assert np.mean(np.abs(kernel) > 3 * std) > 0.001


def test_model_default_inits():
  # What kernel_init="default" means for each model: conv fan_in for
  # ResNet/VGG (Kaiming), Gaussian Glorot for Frankle & Carbin's models.
  def default_std(name, shape):
    return float(np.std(build(name, depth=20).opts.kernel_init_fn()(key(4),
                                                                    shape)))
  conv = (3, 3, 64, 64)
  np.testing.assert_allclose(default_std("resnet", conv),
                             np.sqrt(2 / (9 * 64)), rtol=0.03)
  np.testing.assert_allclose(default_std("vgg16", conv),
                             np.sqrt(2 / (9 * 64)), rtol=0.03)
  np.testing.assert_allclose(default_std("conv4", conv),
                             np.sqrt(2 / (9 * 64 + 9 * 64)), rtol=0.03)
  # The real init of LeNet draws its kernels from the model's default.
  module = build("lenet_300_100", 10)
  variables = jax.jit(lambda k: module.init(k, jnp.zeros((1, 28, 28, 1)),
                                            train=False))(key(5))
  kernel = np.asarray(variables["params"]["Dense_0"]["kernel"])
  assert kernel.shape == (784, 300)
  np.testing.assert_allclose(kernel.std(), np.sqrt(2 / (784 + 300)), rtol=0.02)
  np.testing.assert_array_equal(variables["params"]["Dense_0"]["bias"], 0.0)


def test_fc_tanh_is_a_tanh_mlp_with_pytorch_init():
  # Cohen et al.'s fc-tanh: kernel AND bias of every layer U(±1/sqrt(fan_in))
  # (PyTorch nn.Linear's default), tanh between the layers.
  module = build("fc_tanh", 10, widths=(300, 100))
  params = jax.jit(lambda k: module.init(k, jnp.zeros((1, 28, 28, 1)),
                                         train=False))(key(6))["params"]
  for name, fan_in in (("Dense_0", 784), ("Dense_1", 300), ("output", 100)):
    bound = 1 / np.sqrt(fan_in)
    kernel, bias = (np.asarray(params[name][k]) for k in ("kernel", "bias"))
    assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound
    assert np.abs(bias).max() > bound / 2  # not Flax's zero bias
    np.testing.assert_allclose(kernel.std(), bound / np.sqrt(3), rtol=0.02)
  module = build("fc_tanh", 3, widths=(8, 6))
  variables, x = fake_init(module, (4, 40)), inputs((4, 40))
  p = variables["params"]
  dense = lambda h, name: h @ p[name]["kernel"] + p[name]["bias"]
  want = dense(jnp.tanh(dense(jnp.tanh(dense(x, "Dense_0")), "Dense_1")),
               "output")
  np.testing.assert_allclose(eval_fn(module)(variables, x), want, rtol=1e-5,
                             atol=1e-6)


def test_linear_defaults_to_zero_init_and_bias_option():
  module = build("linear", 3)
  variables = module.init(key(0), jnp.zeros((4, 5)), train=False)
  np.testing.assert_array_equal(variables["params"]["output"]["kernel"], 0.0)
  module = build("linear", 3, use_bias=False, kernel_init="lecun_normal")
  params = abstract_init(module, (4, 5))["params"]
  assert set(params["output"]) == {"kernel"}


def test_init_vmaps_over_seeds_and_train_step_jits():
  module = build("mlp", 10, widths=(16,), norm="batch", dropout=0.5)
  x = inputs((4, 6))
  keys = jax.random.split(key(0), 3)
  variables = jax.jit(jax.vmap(lambda k: module.init(k, x, train=False)))(keys)
  assert variables["params"]["output"]["kernel"].shape == (3, 16, 10)
  assert variables["batch_stats"]["BatchNorm_0"]["mean"].shape == (3, 16)

  step = train_fn(module)
  logits, state = jax.vmap(step, in_axes=(0, None, None))(variables, x, key(1))
  assert logits.shape == (3, 4, 10)
  assert state["batch_stats"]["BatchNorm_0"]["mean"].shape == (3, 16)
  assert not np.allclose(logits[0], logits[1])  # Different seeds.


def test_dropout_only_in_train_mode():
  module = build("mlp", 4, widths=(64,), dropout=0.5)
  variables, x = fake_init(module, (8, 10)), inputs((8, 10))
  forward, step = eval_fn(module), train_fn(module)
  np.testing.assert_array_equal(forward(variables, x), forward(variables, x))
  a, b = step(variables, x, key(1))[0], step(variables, x, key(2))[0]
  assert not np.allclose(a, b)
  assert not np.allclose(a, forward(variables, x))
  # With rate 0 there is no dropout and train == eval (no norm here).
  module0 = build("mlp", 4, widths=(64,), dropout=0.0)
  np.testing.assert_allclose(train_fn(module0)(variables, x, key(1))[0],
                             forward(variables, x), rtol=1e-6)
  with pytest.raises(UserError, match="model.dropout"):
    build("mlp", 4, dropout=1.0)


def test_residual_mlp_adds_the_skip():
  module = build("residual_mlp", 3, widths=(6, 6))
  variables, x = fake_init(module, (4, 40)), inputs((4, 40))
  p = variables["params"]
  relu = jax.nn.relu
  h = relu(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])
  h = h + relu(h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"])
  expected = h @ p["output"]["kernel"] + p["output"]["bias"]
  np.testing.assert_allclose(module.apply(variables, x, train=False), expected,
                             rtol=1e-5, atol=1e-6)
  with pytest.raises(UserError, match="equal model.widths"):
    build("residual_mlp", 3, widths=(6, 5))
