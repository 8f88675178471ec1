"""The papers' findings the BatchNorm reports compare with, each with its
source and protocol (data and optimizer by this project's registry names)."""

from jaxunknowns.report import Reference as Ref

_FRANKLE = ("Frankle, Schwab & Morcos 2020",
            {"model": "resnet", "data": "cifar10", "steps": 62400,
             "optimizer": "momentum"})  # 160 epochs at batch 128.
BN_ONLY_AT_DEPTH = {d: Ref(f"BN-only ResNet-{d} (width 16) ≈ {v:g}% test.",
                           _FRANKLE[0], v, "%", _FRANKLE[1])
                    for d, v in ((14, 48.0), (110, 69.5), (866, 82.0))}
BN_ONLY_DEPTH = Ref("Training only BN's γ and β of a random ResNet: accuracy "
                    "grows with depth.", _FRANKLE[0], protocol=_FRANKLE[1])
BN_ONLY_CONTROLS = Ref("BN-only stays far above as many random weights "
                       "trained (2 per channel) and the output layer alone.",
                       _FRANKLE[0], protocol=_FRANKLE[1])
GAMMA_OFF = Ref("About a quarter to a third of the γ end near zero.",
                _FRANKLE[0], protocol=_FRANKLE[1])

_IOFFE = {"model": "inception", "data": "imagenet"}
INFERENCE_MODE = Ref("At inference BN uses population statistics (running "
                     "averages), in training each batch's own.",
                     "Ioffe & Szegedy 2015, Sec. 3.1", protocol=_IOFFE)
PLACEMENT = Ref("BN goes right before the nonlinearity; no other placement "
                "is compared.", "Ioffe & Szegedy 2015, Sec. 3.2",
                protocol=_IOFFE)
SPEEDUP = Ref("BN-Inception reached the original accuracy in 14 times fewer "
              "steps (with a raised learning rate), then beat it.",
              "Ioffe & Szegedy 2015, Sec. 4.2", 14.0, "×", _IOFFE)
REGULARIZES = Ref("BN regularizes: dropout could be removed and L2 decay "
                  "reduced 5 times.", "Ioffe & Szegedy 2015, Sec. 3.4, 4.2.1",
                  protocol=_IOFFE)
ADABN = Ref("Re-estimating BN's statistics on inputs from another domain, "
            "weights unchanged, recovers accuracy.", "Li et al. 2016 (AdaBN)")
VARIANCE_SHIFT = Ref("Dropout before BN shifts the variance between training "
                     "and inference: combined they often test worse.",
                     "Li et al. 2019")
DECAY_WITH_BN = Ref("L2 decay on weights followed by BN does not regularize.",
                    "van Laarhoven 2017")

_WU_HE = ("Wu & He 2018, Fig. 1", {"model": "resnet50", "data": "imagenet"})
BN_SMALL_BATCH = Ref("BN's error rises rapidly as the per-GPU batch shrinks "
                     "from 32 to 2; GN's is stable.", _WU_HE[0],
                     protocol=_WU_HE[1])
GN_MINUS_BN_AT_2 = Ref("At batch 2 GN's error is 10.6 points below BN's.",
                       _WU_HE[0], 10.6, " points", _WU_HE[1])
GN_LIKE_BN = Ref("At typical batch sizes GN is comparable to BN.",
                 _WU_HE[0], protocol=_WU_HE[1])
TYPICAL_BATCH = 32  # Wu & He's per-GPU batch.

_SANTURKAR = {"model": "vgg11", "data": "cifar10", "steps": 15000,
              "optimizer": "sgd"}  # VGG on CIFAR-10; Fig. 4 spans 15K steps.
_WHY = "Santurkar et al. 2018, Fig."
SMOOTHER = {k: Ref(f"With BN the {what} is smaller along all of training.",
                   f"{_WHY} 4{fig}", protocol=_SANTURKAR)
            for k, what, fig in (("loss_range", "loss variation", "a"),
                                 ("gpred_max", "gradient's change", "b"),
                                 ("beta", "effective β-smoothness", "c"))}
ICS = Ref("BN does not reduce internal covariate shift ‖G − G′‖.",
          f"{_WHY} 3", protocol=_SANTURKAR)
BN_TRAINS_BETTER = Ref("BN trains faster and ends more accurate.",
                       f"{_WHY} 2", protocol=_SANTURKAR)
NOISY_BN = Ref("BN with noise re-drawn every step in its outputs' mean and "
               "variance trains almost as well as BN.", f"{_WHY} 2",
               protocol=_SANTURKAR)
