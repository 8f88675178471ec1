"""The papers' findings the BatchNorm reports compare with, each with its
source and protocol (data and optimizer by this project's registry names)."""

from jaxunknowns.report import Reference as Ref

FRANKLE, _FRANKLE = "Frankle, Schwab & Morcos 2020", {
    "model": "resnet", "data": "cifar10", "steps": 62400,  # 160 epochs
    "optimizer": "momentum"}
BN_ONLY_AT_DEPTH = {d: Ref(f"BN-only ResNet-{d} (width 16) ≈ {v:g}% test.",
                           FRANKLE, v, "%", _FRANKLE)
                    for d, v in ((14, 48.0), (110, 69.5), (866, 82.0))}
BN_ONLY_DEPTH = Ref("Training only BN's γ and β of a random ResNet: accuracy "
                    "grows with depth.", FRANKLE, protocol=_FRANKLE)
BN_ONLY_CONTROLS = Ref("BN-only stays far above as many random weights "
                       "trained (2 per channel) and the output layer alone.",
                       FRANKLE, protocol={**_FRANKLE,
                                          "random weights per channel": 2})
GAMMA_OFF = Ref("About a quarter to a third of the γ end near zero.", FRANKLE,
                protocol=_FRANKLE)

IOFFE, _IOFFE = "Ioffe & Szegedy 2015, Sec.", {"model": "inception",
                                              "data": "imagenet"}
INFERENCE_MODE = Ref("At inference BN uses population statistics (running "
                     "averages), in training each batch's own.",
                     f"{IOFFE} 3.1", protocol=_IOFFE)
PLACEMENT = Ref("BN goes right before the nonlinearity; no other placement "
                "is compared.", f"{IOFFE} 3.2", protocol=_IOFFE)
SPEEDUP = Ref("BN-Inception reached the original accuracy in 14 times fewer "
              "steps (with a raised learning rate), then beat it.",
              f"{IOFFE} 4.2", 14.0, "×", _IOFFE)
REGULARIZES = Ref("BN regularizes: dropout could be removed and L2 decay "
                  "reduced 5 times.", f"{IOFFE} 3.4, 4.2.1", protocol=_IOFFE)
ADABN = Ref("Re-estimating BN's statistics on inputs from another domain, "
            "weights unchanged, recovers accuracy.", "Li et al. 2016 (AdaBN)",
            protocol={"model": "inception-bn", "data": "office-31"})
VARIANCE_SHIFT = Ref("Dropout before BN shifts the variance between training "
                     "and inference: combined they often test worse.",
                     "Li et al. 2019", protocol={
                         "model": "preresnet, resnext, wrn, densenet",
                         "data": "cifar10, cifar100"})
DECAY_WITH_BN = Ref("L2 decay on weights followed by BN does not regularize.",
                    "van Laarhoven 2017",
                    # optim.DECAY_ON's words for what the paper decays.
                    protocol={"decay on": "the kernels a norm follows"})

WU_HE, _WU_HE = "Wu & He 2018, Fig. 1", {"model": "resnet50",
                                        "data": "imagenet"}
BN_SMALL_BATCH = Ref("BN's error rises rapidly as the per-GPU batch shrinks "
                     "from 32 to 2; GN's is stable.", WU_HE, protocol=_WU_HE)
GN_MINUS_BN_AT_2 = Ref("At batch 2 GN's error is 10.6 points below BN's.",
                       WU_HE, 10.6, " points", _WU_HE)
GN_LIKE_BN = Ref("At typical batch sizes GN is comparable to BN.", WU_HE,
                 protocol=_WU_HE)
TYPICAL_BATCH = 32  # Wu & He's per-GPU batch.

WHY, _WHY = "Santurkar et al. 2018, Fig.", {  # VGG; Fig. 4 spans 15K steps.
    "model": "vgg11", "data": "cifar10", "steps": 15000, "optimizer": "sgd"}
SMOOTHER = {k: Ref(f"With BN the {what} is smaller along all of training.",
                   f"{WHY} 4{fig}", protocol=_WHY)
            for k, what, fig in (("loss_range", "loss variation", "a"),
                                 ("gpred_max", "gradient's change", "b"),
                                 ("beta", "effective β-smoothness", "c"))}
ICS = Ref("BN does not reduce internal covariate shift ‖G − G′‖.", f"{WHY} 3",
          protocol=_WHY)
BN_TRAINS_BETTER = Ref("BN trains faster and ends more accurate.", f"{WHY} 2",
                       protocol=_WHY)
NOISY_BN = Ref("BN with noise re-drawn every step in its outputs' mean and "
               "variance trains almost as well as BN.", f"{WHY} 2",
               # the words of bn_report.NOISE_PER["example"]
               protocol={**_WHY, "noise": "i.i.d. per example and activation"})

# The article names these two of BN's benefits (Sec. 1, 'beneficial in three
# ways'); both are Ioffe & Szegedy's own claims.
ACCELERATES = Ref("BN accelerates training.", f"{IOFFE} 4.2",
                  protocol=_IOFFE)
LESS_CAREFUL_INIT = Ref("BN reduces the sensitivity to initial conditions: "
                        "less careful weight initialization is needed.",
                        "Ioffe & Szegedy 2015, abstract", protocol=_IOFFE)
HIGHER_LR = Ref("BN enables higher learning rates: a layer's output does not "
                "change with its weights' scale.", f"{IOFFE} 3.3",
                protocol=_IOFFE)
BJORCK, _BJORCK = "Bjorck et al. 2018, Sec. 2", {"model": "resnet110",
                                                 "data": "cifar10"}
LARGER_LR = Ref("BN's main benefit is the much larger learning rates it "
                "permits; without BN they diverge.", BJORCK, protocol=_BJORCK)
SMALL_LR_GAP = Ref("At a small learning rate BN and unnormalized networks "
                   "train to similar accuracy.", BJORCK, protocol=_BJORCK)
