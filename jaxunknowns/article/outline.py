"""The article's outline: its four questions and, under each, the claims it
cites, each tested by one stage (a run of one experiment).

This is the page's skeleton only. What a stage found, and whether that agrees
with the paper, comes from the stage's own report (its page.json, written by
the experiment's comparison protocol), never from text written here.
"""

import dataclasses
from typing import Tuple

# How big every stage runs (configs/article.py says what each scale means).
SCALES = ("runlocal", "laptop", "gpu", "paper")


@dataclasses.dataclass(frozen=True)
class Section:
  stage: str            # The stage that tests it (configs/article.py STAGES).
  claim: str            # The article's claim, in one sentence; the papers
                        # and their numbers come from the stage's report.


@dataclasses.dataclass(frozen=True)
class Question:
  title: str
  asks: str             # What the article asks, in one sentence.
  sections: Tuple[Section, ...]


QUESTIONS = (
    Question(
        "Why does BatchNorm work?",
        "BatchNorm trains faster, tolerates worse initializations and "
        "regularizes, yet nobody agrees why; and it has traps of its own.",
        (Section("bn_stability", "BatchNorm lets a network train faster, at "
                 "higher learning rates, from worse initializations."),
         Section("bn_only", "Training only BatchNorm's scale and shift, with "
                 "every other weight frozen at its random init, reaches far "
                 "above chance, and more so with depth."),
         Section("bn_smoothness", "BatchNorm makes the loss landscape "
                 "smoother, and does not reduce internal covariate shift."),
         Section("bn_modes", "Train mode (batch statistics) and inference "
                 "mode (running statistics) differ, and the wrong mode fails "
                 "quietly."),
         Section("bn_batch_size", "BatchNorm degrades as the batch shrinks; "
                 "GroupNorm and LayerNorm do not."),
         Section("bn_placement", "BatchNorm before or after the activation: "
                 "an open debate."),
         Section("bn_regularization", "BatchNorm regularizes, and its "
                 "interaction with dropout and weight decay is not clearly "
                 "known.")),
    ),
    Question(
        "Why do over-parameterized networks generalize?",
        "Networks big enough to fit random labels still generalize on real "
        "ones, and bigger ones often generalize better.",
        (Section("randomization", "The same network fits random labels and "
                 "random inputs, so capacity alone cannot explain "
                 "generalization."),
         Section("memorization", "Networks learn patterns first and memorize "
                 "noise later."),
         Section("width_sweep", "Test error keeps falling as width grows past "
                 "what fits the training set."),
         Section("double_descent", "With label noise, test error rises near "
                 "the interpolation threshold, then falls again."),
         Section("mode_connectivity", "Solutions found from different seeds "
                 "are joined by a path of low loss."),
         Section("ntk", "The wider the network, the less its tangent kernel "
                 "moves during training.")),
    ),
    Question(
        "What implicit regularization does gradient descent perform?",
        "With no explicit regularizer, the optimizer itself picks which of "
        "many solutions a network ends at.",
        (Section("max_margin", "On separable data, gradient descent on the "
                 "logistic loss converges in direction to the max-margin "
                 "separator."),
         Section("sharpness", "Large batches find sharper minima that "
                 "generalize worse."),
         Section("landscape", "Filter-normalized plots show flatter minima "
                 "for small batches."),
         Section("hessian_spectrum", "The Hessian's trace and eigenvalue "
                 "density measure how sharp a minimum is."),
         Section("edge_of_stability", "Full-batch gradient descent raises "
                 "sharpness to 2/lr and trains on at the edge of stability."),
         Section("sam", "Seeking flat minima on purpose (SAM) lowers "
                 "sharpness and test error.")),
    ),
    Question(
        "Do lottery tickets exist, and why?",
        "A dense network hides sparse subnetworks that train to its accuracy "
        "from their original initial weights.",
        (Section("imp", "Iterative magnitude pruning with rewinding finds "
                 "winning tickets; they work once the dense network is "
                 "stable to SGD noise."),
         Section("prune_init", "Pruning at initialization (SNIP, GraSP, "
                 "SynFlow) is not a lottery ticket: its sanity checks "
                 "fail.")),
    ),
)

SECTIONS = tuple(s for q in QUESTIONS for s in q.sections)
STAGES = tuple(s.stage for s in SECTIONS)
