r"""Plain supervised training: `--config=configs/train.py[:VARIANT[,runlocal]]`.

Variants (default mnist1d_mlp):
  mnist1d_mlp       MLP 40-100-100-10 on MNIST-1D, the authors' protocol (65.1%).
  mnist1d_cnn       The MNIST-1D authors' CNN, Adam 1e-2, batch 100 (92.3%).
  fashion_lenet     LeNet-300-100 on Fashion-MNIST (offline), Adam 1.2e-3, batch 60.
  cifar10_resnet20  ResNet-20 on TFDS CIFAR-10, OpenLTH's protocol (91.7%).
`runlocal` shrinks any variant to a few steps (tests, smoke runs).
Every field not set here keeps the default (and comment) of
jaxunknowns/config_defaults.py.
"""

import ml_collections

from jaxunknowns.config_defaults import (make_config, openlth_resnet20_cifar10,
                                         shrink_for_local, training_protocol)


def mnist1d_mlp(c):
  c.data.name = "mnist1d"
  c.model.name = "mlp"            # A plain MLP 40-100-100-10; the MNIST-1D
  c.model.widths = (100, 100)     # authors' adds its 2nd layer residually.
  c.optim.name = "adam"
  c.optim.lr = 1e-2               # The authors' benchmark: Adam 1e-2 ...
  c.train.batch_size = 100        # ... batch 100 ...
  c.train.steps = 6000            # ... 6000 steps.
  c.train.eval_every = 1000       # Test accuracy every 1000 steps.
  c.reference = ml_collections.ConfigDict({
      "test_accuracy": 0.651,     # Published MLP accuracy to compare against.
      "source": "MNIST-1D paper (Greydanus & Kobak), MLP",
      "data": "mnist1d",          # The data and model the number is for: another
      "model": "mlp",             # data.name or model.name is not judged by it.
      # The training the number came from: a run that differs names it.
      "protocol": training_protocol(c),
      # Their MLPBase is h = relu(W1 x); h = h + relu(W2 h); W3 h (our
      # residual_mlp): the same weights, another network.
      "protocol_differences": ("model: the authors' MLP adds its second "
                               "hidden layer residually (h + relu(W₂h)), a "
                               "plain MLP here",)})


def mnist1d_cnn(c):
  mnist1d_mlp(c)
  c.model.name = "mnist1d_cnn"    # 3 x Conv1d(25 channels) + linear head.
  c.reference.protocol_differences = ()
  c.reference.test_accuracy = 0.923
  c.reference.source = "MNIST-1D paper (Greydanus & Kobak), CNN"
  c.reference.model = "mnist1d_cnn"


def fashion_lenet(c):
  c.data.name = "fashion_mnist"   # IDX files of Debian's dataset-fashion-mnist.
  c.model.name = "lenet_300_100"  # Frankle & Carbin's LeNet-300-100.
  c.optim.name = "adam"
  c.optim.lr = 1.2e-3             # Frankle & Carbin's LeNet protocol.
  c.train.batch_size = 60
  c.train.steps = 12000           # 12 epochs (the paper trains 50k iterations).
  c.train.eval_every = 2000
  c.train.checkpoint_every = 2000
  c.reference = ml_collections.ConfigDict({
      "test_accuracy": 0.883,     # Fashion-MNIST benchmark, MLP 256-128-100.
      "source": "Fashion-MNIST benchmark (Xiao et al.), MLP 256-128-100",
      "data": "fashion_mnist", "model": "lenet_300_100",
      # What our run does differently from the reference's (report reasons).
      "protocol_differences": ("model: MLP 256-128-100 in the benchmark, "
                               "LeNet-300-100 here",)})


def cifar10_resnet20(c):
  openlth_resnet20_cifar10(c)
  c.model.norm = "batch"
  c.train.eval_every = 5000
  c.train.checkpoint_every = 5000
  c.reference = ml_collections.ConfigDict({
      "test_accuracy": 0.917,
      "source": "OpenLTH cifar_resnet_20 (Frankle et al. 2020)",
      "data": "cifar10", "model": "resnet",
      "protocol": training_protocol(c)})


VARIANTS = {f.__name__: f for f in
            (mnist1d_mlp, mnist1d_cnn, fashion_lenet, cifar10_resnet20)}


def runlocal(c):
  """A few steps of a small model: for tests and smoke runs."""
  shrink_for_local(c, steps=20, checkpoint_every=10)


def train_fields(c):
  c.experiment = "train"
  c.reference = ml_collections.ConfigDict({"test_accuracy": 0.0, "source": "",
                                           "protocol_differences": (),
                                           "data": "", "model": "",
                                           "protocol": {}})


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return make_config(arg, variants=VARIANTS, default="mnist1d_mlp",
                     config_file="configs/train.py", fields=train_fields,
                     runlocal=runlocal)


def get_sweep(arg: str = ""):
  """Sweeps of this config for `python -m jaxunknowns.sweep` (same argument
  as get_config; `runlocal` keeps two runs of each, for tests). Values are
  relative to the variant's own learning rate and batch size."""
  from jaxunknowns.sweep import grid, zipped  # pylint: disable=g-import-not-at-top
  c = get_config(arg)
  lr, batch = c.optim.lr, c.train.batch_size
  lrs = [round(lr * f, 10) for f in (0.1, 0.3, 1.0, 3.0)]
  sweeps = {
      # The learning rate matters more than most other choices.
      "lr": grid(**{"optim.lr": lrs}),
      # Goyal et al.'s linear scaling rule: the lr grows with the batch size.
      "batch_lr": zipped(**{
          "train.batch_size": [batch // 4, batch // 2, batch, batch * 2],
          "optim.lr": [round(lr * f, 10) for f in (0.25, 0.5, 1.0, 2.0)]}),
  }
  if c.data.name == "mnist1d":
    # The MNIST-1D paper's MLP vs CNN gap, at every learning rate.
    sweeps["lr_model"] = grid(**{"optim.lr": lrs,
                                 "model.name": ["mlp", "mnist1d_cnn"]})
  if "runlocal" in arg.split(","):
    sweeps = {name: runs[:2] for name, runs in sweeps.items()}
  return sweeps
