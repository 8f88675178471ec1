"""The findings the implicit-regularization reports compare with (the project
brief, §3); `protocol`: what a difference may be explained by."""

from jaxunknowns.report import Reference

SOUDRY_SETTING = {"data": "soudry2d", "model": "linear, no bias",
                  "loss": "logistic", "init": "w = 0"}
SOUDRY = tuple(Reference(s, "Soudry et al. 2018, Fig. 1 and Thms. 3-4",
                         protocol=SOUDRY_SETTING) for s in (
    "GD: ||w(t)|| grows like ||ŵ|| log t (ŵ: the hard-margin SVM)",
    "GD: the training loss falls like 1/t",
    "GD: ||w/||w|| − ŵ/||ŵ|||| and the angle to ŵ fall as O(1/log t)",
    "GD with momentum and SGD (Nacson et al. 2019) share GD's limit",
    "Adam does not converge to the L2 max-margin direction"))
(SOUDRY_NORM, SOUDRY_LOSS, SOUDRY_DIRECTION, SOUDRY_OTHERS,
 SOUDRY_ADAM) = SOUDRY
# Shown on a convnet, not on the linear data of Fig. 1.
SOUDRY_TEST = Reference(
    "The test loss rises while the test error keeps falling (a convnet on "
    "CIFAR-10, SGD with momentum)", "Soudry et al. 2018, Fig. 2",
    protocol={"data": "cifar10", "model": "convnet",
              "loss": "cross-entropy"})

# Keskar, Mudigere, Nocedal, Smelyanskiy & Tang 2017, the same epochs.
KESKAR, KESKAR_SETTING = "Keskar et al. 2017", {
    "optimizer": "adam", "small batch": 256, "sharpness maximiser": "L-BFGS-B",
    "large batch": "10% of the training set"}
KESKAR_SHARP, KESKAR_WORSE, KESKAR_INTERPOLATION = (
    Reference(s, source, protocol=KESKAR_SETTING) for s, source in (
        ("Large batches (10% of the data) converge to sharper minima than "
         "small batches (by ε-sharpness)", KESKAR),
        ("Large-batch minima generalize worse (lower test accuracy)", KESKAR),
        ("On the line from the small- to the large-batch solution the loss "
         "rises more steeply past the large-batch end", KESKAR + ", Fig. 3")))

# Keskar et al. define sharpness by the Hessian's large eigenvalues but
# measure ε-sharpness (too costly for them); Yao, Gholami, Lei, Keutzer &
# Mahoney 2018 ("Hessian-based analysis of large batch training and
# robustness to adversaries", NeurIPS) measure the top eigenvalue itself.
YAO_EIGENVALUE = Reference(
    "Large-batch training ends where the Hessian's top eigenvalue is larger "
    "than small-batch training's", "Yao et al. 2018")

# Li, Xu, Taylor, Studer & Goldstein 2018, filter-normalized directions:
# (first arm, last arm) of configs/landscape.py -> (the flatter arm, finding).
LI_FLATTER = {
    ("small_batch", "large_batch"): ("small_batch", Reference(
        "Small-batch minima look wider than large-batch ones",
        "Li et al. 2018; Keskar et al. 2017", protocol={"data": "cifar10"})),
    ("skip", "noskip"): ("skip", Reference(
        "Skip connections keep a deep net's landscape flat and "
        "convex-looking", "Li et al. 2018", protocol={
            "data": "cifar10", "model": "ResNet-56", "epochs": 300})),
    ("with_bn", "without_bn"): ("with_bn", Reference(
        "BatchNorm keeps the landscape flat and convex-looking",
        "Li et al. 2018", protocol={"data": "cifar10"}))}

# Li et al. 2018, Sec. 7 (Fig. 9): optimization paths on their PCA plane.
LI_PATH_SETTING = {"data": "cifar10", "model": "VGG-9", "batch": "128, 8192"}
LI_PATH_LOW_DIM, LI_RANDOM_MISSES = (
    Reference(s, "Li et al. 2018, Sec. 7", value, "%", LI_PATH_SETTING)
    for s, value in (
        ("The optimization path lies in a very low-dimensional space: 40–90% "
         "of its variation falls on its top two PCA directions", 40.0),
        ("Two random directions capture almost none of the path's variation "
         "(random vectors in high dimension are nearly orthogonal), so "
         "random planes cannot show the path", None)))

# Ghorbani, Krishnan & Xiao 2019 (Hessian eigenvalue density by stochastic
# Lanczos quadrature) and Yao, Gholami, Keutzer & Mahoney 2020 (PyHessian).
GHORBANI, GHORBANI_SETTING = "Ghorbani et al. 2019", {
    "data": "cifar10", "model": "ResNet-32", "optimizer": "momentum"}
GHORBANI_OUTLIERS, GHORBANI_BN, GHORBANI_POPULATION = (
    Reference(s, source, protocol=GHORBANI_SETTING) for s, source in (
        ("Without BatchNorm a few large outlier eigenvalues stand apart from "
         "the bulk of the Hessian's spectrum", GHORBANI + ", Sec. 4"),
        ("With BatchNorm (the Hessian with batch statistics) the outliers "
         "shrink or vanish", GHORBANI + ", Sec. 4"),
        ("With BatchNorm's population statistics the outliers return",
         GHORBANI + ", Sec. 4")))
YAO_TRACE = Reference(
    "Removing BatchNorm gives a larger Hessian trace (a sharper landscape) "
    "at the end of training", "Yao et al. 2020 (PyHessian), Sec. 4",
    protocol={"data": "cifar10", "model": "ResNet-20",
              "hessian batch norm": "eval"})

# Sharpness-aware minimization (sam): Foret, Kleiner, Mobahi & Neyshabur
# 2021; the WRN-16-8 numbers are the unofficial PyTorch SAM repository's
# (davda54/sam README: label smoothing, cutout, SAM ρ = 0.05, ASAM ρ = 2).
FORET, FORET_SETTING = "Foret et al. 2021", {
    "data": "cifar10", "optimizer": "momentum", "rho": 0.05}
FORET_FLAT, FORET_COMPUTE = (
    Reference(s, FORET, protocol=FORET_SETTING) for s in (
        "SAM reaches flatter minima: a smaller top Hessian eigenvalue",
        "SAM's gain is not its extra compute (two gradients a step): the "
        "baselines trained for twice the epochs still test worse"))
DAVDA_WRN = Reference(
    "WRN-16-8 on CIFAR-10, 200 epochs: test error SGD 3.20%, SAM 2.86%, "
    "ASAM 2.55%", "davda54/sam README, Experiments (unofficial PyTorch SAM)",
    protocol={"data": "cifar10", "model": "WRN-16-8", "epochs": 200})

# Cohen, Kaur, Li, Kolter & Talwalkar 2021 (ICLR), "Gradient descent on
# neural networks typically occurs at the edge of stability"; their code:
# github.com/locuslab/edge-of-stability (gd.py, flow.py: RK4 gradient flow).
COHEN, COHEN_SETTING = "Cohen et al. 2021", {
    "data": "cifar10", "train examples": 5000, "model": "fc_tanh",
    "batch": "full", "loss": "mse"}
COHEN_SHARPENING, COHEN_HOVER, COHEN_LOSS, COHEN_FLOW, COHEN_MOMENTUM = (
    Reference(s, f"{COHEN}, {where}", protocol=COHEN_SETTING)
    for s, where in (
        ("Progressive sharpening: λ_max rises from below 2/η until it "
         "reaches 2/η", "Sec. 3, Fig. 1"),
        ("Then λ_max hovers just above 2/η (the edge of stability)",
         "Sec. 3, Fig. 1"),
        ("Meanwhile the training loss keeps falling over long times, "
         "non-monotonically", "Sec. 3, Fig. 1"),
        ("Gradient flow does not stop at 2/η: its sharpness keeps rising",
         "Sec. 3; gradient flow by RK4 in their flow.py"),
        ("With Polyak momentum β, λ_max settles at (2 + 2β)/η",
         "their momentum appendix")))
