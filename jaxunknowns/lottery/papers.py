"""The lottery-ticket findings the `imp` report compares with (numbers as the
project brief quotes them); a config's `reference` names its set in TICKETS.
Protocols use the config's names, so like is compared with like."""

import dataclasses
from typing import Optional, Tuple

from jaxunknowns.report.compare import Reference

FC, NOTEBOOK = "Frankle & Carbin 2019", "MNIST-1D lottery-ticket notebook"
LENET = {"model": "lenet_300_100", "data": "mnist", "steps": 50000,
         "optimizer": "adam", "lr": 1.2e-3, "batch": 60}
CONV = {"data": "cifar10", "optimizer": "adam", "batch": 60}
RESNET20 = {"model": "resnet20", "data": "cifar10", "steps": 63000,
            "optimizer": "momentum", "lr": 0.1, "batch": 128}
MNIST1D = {"model": "residual MLP, width 500", "data": "mnist1d",
           "steps": 1501, "optimizer": "adam", "lr": 2e-2, "batch": 100}

LENET_HOLDS = Reference("LeNet-300-100 winning tickets match the dense "
                        "accuracy down to ~3% of the weights", FC, 3.0, "%",
                        LENET)
LENET_FASTER = Reference("LeNet tickets at 10–20% of the weights reach their "
                         "early-stopping point faster", FC, 20.0, "%", LENET)
LENET_REINIT_FALLS = Reference("randomly reinitialized LeNet tickets lose "
                               "accuracy from ~26% of the weights", FC, 26.0,
                               "%", LENET)
CONTROLS_FALL_OFF = Reference("randomly reinitialized tickets and randomly "
                              "pruned networks fall off much sooner", FC,
                              protocol=LENET)  # first shown on LeNet (MNIST)
CONV_HOLDS = Reference("Conv-2/4/6 winning tickets at 10–20% of the weights "
                       "match or beat the dense accuracy", FC, 20.0, "%", CONV)
CONV_BEATS = Reference("Conv-2/4/6 winning tickets beat the dense accuracy",
                       FC, 0.0, " points", CONV)
CONV_FASTER = Reference("Conv-2/4/6 tickets at 10–20% of the weights reach "
                        "their early-stopping point faster", FC, 20.0, "%",
                        CONV)
RESNET20_DENSE = Reference("ResNet-20 on CIFAR-10 reaches 91.7%",
                           "Frankle et al. 2020", protocol=RESNET20)
RESNET20_LATE_REWIND = Reference(
    "rewound to ~iteration 2000 (where the dense net is stable), IMP tickets "
    "with global pruning (OpenLTH: 20% per level) keep the dense accuracy at "
    "10–20% of the weights", "Frankle et al. 2020", 20.0, "%", RESNET20)
DENSE_INSTABILITY_FALLS = Reference(
    "the dense network's instability falls as the rewind step k grows",
    "Frankle et al. 2020", protocol=RESNET20)
MNIST1D_DENSE = Reference("the dense net gets 61–66%", NOTEBOOK,
                          protocol=MNIST1D)
MNIST1D_TICKETS = Reference("magnitude tickets reach 72–75% at 86–91% "
                            "sparsity", NOTEBOOK, protocol=MNIST1D)
MNIST1D_RANDOM = Reference("random masks get ≈61% at 91% sparsity", NOTEBOOK,
                           protocol=MNIST1D)

Range = Optional[Tuple[Reference, Tuple[float, float]]]


@dataclasses.dataclass(frozen=True)
class Tickets:
  """A paper's findings, by the quantity the `imp` report measures."""
  holds_to: Optional[Reference] = None           # tickets match dense to X%
  faster_to: Optional[Reference] = None          # earlier early stop to X%
  reinit_falls_from: Optional[Reference] = None  # reinit below dense from X%
  ticket_beats_dense: Optional[Reference] = None
  dense: Range = None  # Accuracy ranges (lo, hi) %; "sparse" is <= sparse_at %
  ticket_sparse: Range = None                    # of the weights remaining.
  random_prune_sparse: Range = None
  sparse_at: float = 100.0

  @property
  def claim(self) -> str:
    found = [getattr(self, f.name) for f in dataclasses.fields(self)]
    refs = [r[0] if isinstance(r, tuple) else r for r in found]
    return "; ".join(f"{r.statement} ({r.source})" for r in refs
                     if isinstance(r, Reference)) + "."


TICKETS = {
    "frankle_carbin_lenet": Tickets(LENET_HOLDS, LENET_FASTER,
                                    LENET_REINIT_FALLS),
    "frankle_carbin_conv": Tickets(CONV_HOLDS, CONV_FASTER,
                                   ticket_beats_dense=CONV_BEATS),
    "frankle2020_resnet20": Tickets(RESNET20_LATE_REWIND, dense=(
        RESNET20_DENSE, (91.7, 91.7))),
    "mnist1d_notebook": Tickets(
        dense=(MNIST1D_DENSE, (61.0, 66.0)),
        ticket_sparse=(MNIST1D_TICKETS, (72.0, 75.0)),
        random_prune_sparse=(MNIST1D_RANDOM, (61.0, 61.0)), sparse_at=14.0),
}

# ---- prune_init: pruning at initialization and its sanity checks ----------
SNIP_LENET = Reference(
    "SNIP prunes LeNet-300-100 on MNIST at initialization to 98% sparsity "
    "with 2.4% test error (dense 1.7%)", "Lee, Ajanthan & Torr 2019, Table 1",
    2.4, "% error", {"model": "lenet_300_100", "data": "mnist",
                     "optimizer": "momentum", "lr": 0.1, "batch": 100})
TANAKA_COLLAPSE = Reference(
    "SynFlow reaches maximal compression without layer collapse, while SNIP "
    "and GraSP collapse a layer before it", "Tanaka, Kunin, Yamins & Ganguli "
    "2020", protocol={"data": "cifar10/cifar100/tiny_imagenet"})
FRANKLE21_INIT = Reference(
    "shuffling each layer's mask or reinitializing the kept weights leaves "
    "SNIP, GraSP and SynFlow about unchanged or better (only the per-layer "
    "densities matter)", "Frankle, Dziugaite, Roy & Carbin 2021",
    protocol={"data": "cifar10/tiny_imagenet/imagenet"})
FRANKLE21_TICKET = Reference(
    "shuffling or reinitializing hurts magnitude pruning after training and "
    "IMP tickets with rewinding", "Frankle, Dziugaite, Roy & Carbin 2021",
    protocol={"data": "cifar10/tiny_imagenet/imagenet",
              "rewinding": "to an early step of training"})
ZHOU_SIGNS = Reference(
    "a ticket fails with the signs of its kept initial weights flipped",
    "Zhou, Lan, Liu & Yosinski 2019", protocol={"data": "mnist/cifar10"})

# ---- imp: rewinding vs fine-tuning (Renda, Frankle & Carbin 2020) ----------
RENDA = "Renda, Frankle & Carbin 2020"
RENDA_LR = Reference("learning-rate rewinding (trained weights, the lr "
                     "schedule replayed) matches or beats weight rewinding "
                     "at every sparsity", RENDA, protocol=RESNET20)
RENDA_FT = Reference("weight rewinding beats fine-tuning at the final lr "
                     "for the same retraining budget", RENDA, protocol=RESNET20)
