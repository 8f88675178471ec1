"""The papers' findings the over-parameterization reports compare with; their
protocols under `our_protocol`'s keys, spelled as our configs spell them."""

from jaxunknowns.report import Reference

_ZHANG = {"model": "mlp", "hidden_layers": 1, "data": "cifar10",
          "train_examples": 50000, "optimizer": "momentum 0.01"}
ZHANG_FIT = Reference(
    "Every variant (true labels, random labels, shuffled pixels, random "
    "pixels, Gaussian inputs) reaches 100% training accuracy with unchanged "
    "hyper-parameters (MLP 1×512: 100.0 true, 99.34 random labels).",
    "Zhang et al. 2017, Fig. 1a, Table 1", 100.0, "%", _ZHANG)
# What "fits" means: Zhang et al. call every Table 1 run fitted, the lowest
# being MLP 1×512 on random labels at 99.34% training accuracy (with weight
# decay, on true labels, 99.80%). Our train-accuracy rows judge by that
# level, not by the stages' own stopping criterion (randomization.fit_accuracy,
# 100% by default), which a regularized stage may never reach.
ZHANG_FITTED = 0.9934
ZHANG_CHANCE = Reference(
    "Random labels test at chance: 10.61% (MLP 1×512), 9.78% (Inception).",
    "Zhang et al. 2017, Table 1", 10.61, "%", _ZHANG)
ZHANG_SLOWDOWN = Reference(
    "Random labels take a small constant factor longer to fit than true "
    "labels.", "Zhang et al. 2017, Fig. 1b", protocol=_ZHANG)
ZHANG_CORRUPTION = Reference(
    "Test error rises smoothly with the fraction p of corrupted labels, up "
    "to chance; steps to fit grow with p.", "Zhang et al. 2017, Fig. 1b, 1c",
    protocol=_ZHANG)
ZHANG_REGULARIZATION = Reference(
    "Explicit regularization changes test accuracy by a few points (MLP "
    "1×512 with weight decay 99.80 / 50.39 train / test against 100.0 / "
    "50.51; Inception's random crops +3.56) and does not prevent fitting "
    "random labels.", "Zhang et al. 2017, Table 1", protocol=_ZHANG)

# Their code (bneyshabur/over-parametrization, main.py): SGD with momentum
# 0.9 at lr 0.001, batch 64, until the train loss is below 0.01.
_NEYSHABUR = {"model": "mlp", "hidden_layers": 1, "train_examples": 50000,
              "data": "cifar10, svhn, mnist", "optimizer": "momentum 0.001",
              "batch": 64, "stop": "train loss 0.01"}
NEYSHABUR_ERRORS = Reference(
    "Train error is zero from small widths on while test error keeps falling "
    "with width (widths 2^6 … 2^15, SGD, no explicit regularization).",
    "Neyshabur et al. 2018, Fig. 1", protocol=_NEYSHABUR)
NEYSHABUR_NOISE = Reference(
    "With 5% label noise test error still falls with width.",
    "Neyshabur et al. 2015, Fig. 1",
    protocol={**_NEYSHABUR, "stop": "fixed budget"})
NEYSHABUR_MEASURES = Reference(
    "‖U − U₀‖_F falls and ‖U‖_F grows with width; their bound "
    "‖V‖_F (‖U − U₀‖_F + ‖U₀‖₂) / (γ√m) + √(h/m) is the only measure that "
    "falls; the spectral bound and the parameter count grow.",
    "Neyshabur et al. 2018, Fig. 2/3", protocol=_NEYSHABUR)

# How a noisy label is drawn. Ours (data.transforms.label_noise), Zhang et
# al.'s code and the MNIST-1D notebook (np.random.randint(0, 10)) replace it
# by any class, the true one included, so a fraction p(1 − 1/C) of the labels
# end wrong; Nakkiran et al. draw another class, so p of them do.
ANY_CLASS = "any class (p(1 − 1/C) of labels wrong)"
ANOTHER_CLASS = "another class (p of labels wrong)"

_NOTEBOOK = {"model": "mlp", "hidden_layers": 2, "data": "mnist1d",
             "optimizer": "momentum 0.01", "batch": 100, "epochs": 500,
             "noisy labels": ANY_CLASS}
# The notebook's saved outputs (greydanus/mnist1d at 9129ceb, notebooks/
# deep-double-descent.ipynb; another saved version holds other numbers), one
# run per width, widths np.unique(np.geomspace(2, 300, 20, dtype=int))): with
# 15% noise, test error 48.97% at h = 9, 50.28% at h = 12, 47.24% at h = 16
# (no h = 8). The report takes the lowest of our widths in 8–16, so the
# notebook's side is its lowest too.
NOTEBOOK_SMALL = Reference(
    "With 15% label noise, the best test error at h = 8–16 is 47.24% (h = 16; "
    "48.97% at h = 9, 50.28% at h = 12).", "MNIST-1D notebook", 47.24, "%",
    _NOTEBOOK)
# Its two highest points straddle the threshold: 54.05% at h = 47 (train
# error 5.47%) and 54.02% at h = 61 (train error 0, the first such width).
NOTEBOOK_PEAK = Reference(
    "It peaks at ≈ 54% at the interpolation threshold: 54.05% at h = 47 (train "
    "error 5.5%) and 54.02% at h = 61 (the first width with train error 0), "
    "and falls again beyond it.",
    "MNIST-1D notebook; Nakkiran et al. 2020, Fig. 1", 54.0, "%", _NOTEBOOK)
NOTEBOOK_LARGE = Reference("Test error 45.5% at h = 300.", "MNIST-1D notebook",
                           45.5, "%", _NOTEBOOK)
NOTEBOOK_CLEAN = Reference("Without label noise: no clear peak.",
                           "MNIST-1D notebook", protocol=_NOTEBOOK)


# Nakkiran et al. 2020 ("Deep double descent"), the two other forms:
_NAKKIRAN = {"model": "ResNet18 (widths 1–64)", "data": "cifar10",
             "label noise": "20%", "noisy labels": ANOTHER_CLASS,
             "optimizer": "adam"}
NAKKIRAN_EPOCH_SMALL, NAKKIRAN_EPOCH_MEDIUM, NAKKIRAN_EPOCH_LARGE = (
    Reference(s, "Nakkiran et al. 2020, Sec. 6, Fig. 9", protocol=_NAKKIRAN)
    for s in ("Over training, a small model's test error falls (no rise).",
              "A medium model, one that barely reaches zero train error, "
              "follows a U over training: early stopping wins.",
              "A sufficiently large model's test error descends twice over "
              "training (epoch-wise double descent)."))
# Sample-wise: their CIFAR-10 figure trains 5-layer CNNs, not ResNet18s
# (and not with the ResNets' Adam: no optimizer is declared for it).
NAKKIRAN_SAMPLE, NAKKIRAN_SAMPLE_SHIFT = (
    Reference(s, "Nakkiran et al. 2020, Sec. 7", protocol={
        "model": "5-layer CNN (widths 1–64)", "data": "cifar10",
        "label noise": "20%", "noisy labels": ANOTHER_CLASS})
    for s in ("Near the critical training-set size more data does not help "
              "and can hurt: test error rises with n.",
              "The critical size grows with the model: the test-error peak "
              "moves to larger n for wider models."))

def our_protocol(config, train_examples: int, **extra):
  """This run's settings under the keys the references declare."""
  t, sweep = config.train, config.get("sweep")
  return {"model": config.model.name, "data": config.data.name,
          "hidden_layers": sweep.depth if sweep else len(config.model.widths),
          "train_examples": train_examples, "batch": t.batch_size,
          "epochs": round(t.steps * t.batch_size / train_examples),
          "optimizer": f"{config.optim.name} {config.optim.lr:g}", **extra}

# Arpit et al. 2017, "A closer look at memorization in deep networks" (ICML):
# MLPs on MNIST and CNNs on CIFAR-10, labels or inputs replaced by noise. The
# findings are qualitative (curves, no headline numbers), so none is quoted.
_ARPIT = {"data": "mnist, cifar10"}
ARPIT_CLEAN_FIRST = Reference(
    "With noisy labels, networks fit the examples with clean labels well "
    "before they memorize the noisy ones (they learn simple patterns first).",
    "Arpit et al. 2017, Sec. 4", protocol=_ARPIT)
# The fraction of noisy-label examples predicted as their true class is
# plotted by Liu, Niles-Weed, Razavian & Fernandez-Granda 2020 ("Early-
# learning regularization prevents memorization of noisy labels", NeurIPS),
# a measurement of what Arpit et al. argue.
ARPIT_TRUE_LABEL = Reference(
    "Early in training the network classifies many noisy-label training "
    "examples as their true class: it has learned the pattern, not the noise.",
    "Liu et al. 2020, Fig. 1; Arpit et al. 2017, Sec. 4",
    protocol={"data": "cifar10"})
ARPIT_EARLY_STOP = Reference(
    "Validation accuracy peaks before the noise is memorized and falls as it "
    "is, so validation-based early stopping keeps most of the generalization.",
    "Arpit et al. 2017, Sec. 4-5", protocol=_ARPIT)
ARPIT_REGULARIZATION = Reference(
    "Explicit regularization (dropout most of all, also weight decay) slows "
    "or prevents the memorization of noise while barely hurting the learning "
    "of real data.", "Arpit et al. 2017, Sec. 5", protocol=_ARPIT)
ARPIT_ORDER = Reference(
    "Which examples are learned early is consistent across runs for real "
    "data (\"easy examples\") and much less so for random labels.",
    "Arpit et al. 2017, Sec. 3.1", protocol=_ARPIT)

# Garipov et al. 2018, "Loss surfaces, mode connectivity, and fast ensembling
# of DNNs" (NeurIPS): `mode_connectivity`. (Draxler et al. 2018 join minima
# by AutoNEB chains of many pivots, not one bend: no row cites them.)
_GARIPOV = {"model": "vgg16", "data": "cifar10", "optimizer": "momentum 0.015"}
GARIPOV_LINE = Reference(
    "The straight line between two independently trained minima climbs a "
    "high barrier of train loss and test error.",
    "Garipov et al. 2018, Sec. 1, Fig. 1 left; Goodfellow et al. 2015",
    protocol=_GARIPOV)
GARIPOV_CURVE = Reference(
    "A quadratic Bézier curve or a polygonal chain with one bend, trained on "
    "the loss expected along it, joins the same minima with train loss and "
    "test error nearly constant: far below the line's barrier.",
    "Garipov et al. 2018, Sec. 3, Fig. 1 middle/right, Fig. 2",
    protocol=_GARIPOV)
# The authors' table gives each path's min and max test error; with the
# two minima at 6.79% and 6.94%, our barrier (max minus the larger end) is
# 7.75 − 6.94 = 0.81 points (0.96 would be over the better end).
GARIPOV_VGG = Reference(
    "VGG-16 on CIFAR-10: minima at 6.79% and 6.94% test error, at most 7.75% "
    "along the Bézier curve between them.", "Garipov et al. 2018, the "
    "dnn-mode-connectivity README's CIFAR-10 table", 0.81, " points", _GARIPOV)

# Lee et al. 2019, "Wide neural networks of any depth evolve as linear models
# under gradient descent" (NeurIPS), and Fort et al. 2020, "Deep learning
# versus kernel learning: an empirical study of loss landscape geometry and
# the time evolution of the neural tangent kernel" (NeurIPS): `ntk`.
_LEE = {"model": "ntk_mlp", "data": "cifar10", "optimizer": "sgd",
        "loss": "mse"}
LEE_WEIGHTS = Reference(
    "In NTK parameterization the weights' relative change over training, "
    "||w_T − w_0|| / ||w_0||, shrinks with width n like 1/√n (slope −1/2 on "
    "log-log axes).", "Lee et al. 2019, Sec. 2.3, Fig. 1", -0.5, "", _LEE)
LEE_KERNEL = Reference(
    "The empirical NTK stays closer to its initial value as width grows: "
    "||Θ_t − Θ_0||_F / ||Θ_0||_F = O(1/√n).", "Lee et al. 2019, Sec. 2.3, "
    "Fig. 1", -0.5, "", _LEE)
LEE_LINEAR = Reference(
    "As width grows the network's outputs approach those of its "
    "linearization around w_0, and its test accuracy that of kernel "
    "regression with Θ_0.", "Lee et al. 2019, Sec. 2-3", protocol=_LEE)
# Fort et al.'s kernel distance is 1 − cos θ of two kernels, ours (ntk.
# kernel_angle) θ itself: at a fixed dt (1 − cos θ ≈ θ²/2) the two rank the
# phases' speeds alike, so the protocols name what they share.
KERNEL_ANGLE = "from the cosine of the two kernels (scale-free)"
FORT_EARLY = Reference(
    "The empirical NTK changes fastest early in training (its velocity falls "
    "over the first epochs), then slowly.", "Fort et al. 2020, Sec. 4",
    protocol={"model": "resnet", "data": "cifar10",
              "kernel distance": KERNEL_ANGLE})
