"""Figures and report.md of an `imp` run, from its workdir's summary.json.

The paper's numbers beside ours: `PAPERS` holds, per source a config's
`reference.claim` quotes, the numbers that claim states (as its text gives
them, and as a value to compare against) and the source's protocol (data,
steps per level, model), which names the likely reasons where ours differ.
A claim from a source not listed here is quoted as it is, with no numbers
beside ours.
"""

import dataclasses
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

import matplotlib
import matplotlib.ticker  # pylint: disable=unused-import
from jaxunknowns.report.plots import plt  # pylint: disable=g-import-not-at-top
import numpy as np

from jaxunknowns import report
from jaxunknowns.metrics import stats

STYLE = {"ticket": dict(color="C0", marker="o", label="winning ticket"),
         "random_reinit": dict(color="C3", marker="s",
                               label="random reinit (same mask)"),
         "random_prune": dict(color="C2", marker="^",
                              label="random pruning (same sparsity)")}
CONTROLS = ("random_reinit", "random_prune")
# "Matches dense": within this many accuracy points of the dense network
# (or above), on the means over seeds.
HOLD_POINTS = 0.3


@dataclasses.dataclass(frozen=True)
class Paper:
  """What one source states, and its protocol.

  numbers: quantity -> (the paper's words, a value to compare with: % of
           weights remaining for `holds_to`, `faster_to`, `reinit_falls_from`;
           accuracy % (lo, hi) for `dense_accuracy`, `ticket_sparse`,
           `random_sparse`; None where the paper states a direction only).
  """
  prefix: str                    # How the config's reference.claim starts.
  dataset: str
  steps: Mapping[str, int]       # Steps per level by model name ("*": any).
  model: str                     # The paper's model, in words.
  models: Tuple[str, ...]        # Our model names that are that model.
  numbers: Mapping[str, Tuple[str, Any]]
  at_remaining: float = 100.0    # ticket/random_sparse: % weights, at most.


PAPERS = (
    Paper("Frankle & Carbin 2019, LeNet-300-100", "mnist", {"*": 50000},
          "LeNet-300-100", ("lenet_300_100",),
          {"holds_to": ("≈3.6%", 3.6), "faster_to": ("≈7%", 7.0),
           "reinit_falls_from": ("≈26%", 26.0)}),
    Paper("Frankle & Carbin 2019 (Figure 5)", "cifar10",
          {"conv2": 20000, "conv4": 25000, "conv6": 30000}, "Conv-2/4/6",
          ("conv2", "conv4", "conv6"),
          {"ticket_gain": ("up to +3.4/+3.5/+3.3 (Conv-2/4/6)", None),
           "holds_to": ("≈10–20%", 20.0), "faster_to": ("≈10–20%", 20.0),
           "reinit_falls_from": ("much sooner than the tickets", None)}),
    Paper("Frankle et al. 2020", "cifar10", {"*": 63000}, "ResNet-20",
          ("resnet",),
          {"dense_accuracy": ("91.7", (91.7, 91.7)),
           "holds_to": ("≈10–20% (rewound to ≈iteration 2000)", 20.0)}),
    Paper("MNIST-1D authors' lottery-ticket notebook", "mnist1d",
          {"*": 1501}, "a residual MLP of width 500", (),
          {"dense_accuracy": ("61–66", (61.0, 66.0)),
           "ticket_sparse": ("72–75 at 86–91% sparsity", (72.0, 75.0)),
           "random_sparse": ("≈61 at 91% sparsity", (59.0, 63.0))},
          at_remaining=14.0),
)


def paper_of(claim: str) -> Optional[Paper]:
  for paper in PAPERS:
    if claim.startswith(paper.prefix):
      return paper
  return None


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------
def _series(levels, variant, field):
  xs, means, stds = [], [], []
  for entry in levels:
    block = entry if variant == "ticket" else entry.get(variant)
    if not block or field not in block:
      continue
    xs.append(100 * entry["weights_remaining"])
    means.append(block[field]["mean"])
    stds.append(block[field]["std"])
  return np.array(xs), np.array(means), np.array(stds)


def _sparsity_axis(ax):
  ax.set_xscale("log")
  ticks = [100, 70, 50, 30, 20, 10, 7, 5, 3, 2, 1, 0.5, 0.3, 0.2, 0.1]
  lo, hi = ax.get_xlim()
  ax.set_xticks([t for t in ticks if min(lo, hi) <= t <= max(lo, hi)] or ticks)
  ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
  ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
  ax.invert_xaxis()  # Sparser to the right, as in the paper.
  ax.set_xlabel("weights remaining (%)")
  ax.grid(alpha=0.3, which="both")


def plot_vs_sparsity(levels, field, ylabel, path, scale=100.0, title=""):
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  for variant, style in STYLE.items():
    xs, mean, std = _series(levels, variant, field)
    if len(xs):
      ax.errorbar(xs, mean * scale, yerr=std * scale, capsize=3, **style)
  _sparsity_axis(ax)
  ax.set_ylabel(ylabel)
  ax.legend(fontsize=8)
  if title:
    ax.set_title(title, fontsize=10)
  fig.tight_layout()
  report.save_figure(fig, path)


def plot_instability(instability, path):
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  dense = instability.get("dense", [])
  if dense:
    ks = [d["rewind_step"] for d in dense]
    mean = [100 * d["instability"]["mean"] for d in dense]
    std = [100 * d["instability"]["std"] for d in dense]
    ax.errorbar([max(k, 1) for k in ks], mean, yerr=std, marker="o",
                capsize=3, label="dense network")
  for t in instability.get("tickets", []):
    ax.errorbar([max(t["rewind_step"], 1)], [100 * t["instability"]["mean"]],
                yerr=[100 * t["instability"]["std"]], marker="s", capsize=3,
                label=f"IMP ticket, {100 * t['weights_remaining']:.1f}% weights")
  ax.set_xscale("log")
  ax.set_xlabel("rewind step k (0 plotted at 1)")
  ax.set_ylabel("instability (error barrier, %)")
  ax.grid(alpha=0.3, which="both")
  ax.legend(fontsize=8)
  fig.tight_layout()
  report.save_figure(fig, path)


# ---------------------------------------------------------------------------
# Our numbers for the paper's quantities
# ---------------------------------------------------------------------------
def _pct(entry) -> str:
  return f"{100 * entry['weights_remaining']:.2f}%"


def _acc(entry, variant="ticket") -> float:
  block = entry if variant == "ticket" else entry[variant]
  return block["test_accuracy"]["mean"]


def _holds(levels, entry, variant="ticket") -> bool:
  return _acc(entry, variant) >= (
      levels[0]["test_accuracy"]["mean"] - HOLD_POINTS / 100)


def holds_to(levels, variant="ticket"):
  """The sparsest level down to which every level of `variant` matches dense
  (within HOLD_POINTS, or above); None if the first pruned level does not."""
  last = None
  for entry in levels[1:]:
    if variant != "ticket" and variant not in entry:
      return last
    if not _holds(levels, entry, variant):
      return last
    last = entry
  return last


def faster_to(levels):
  """The sparsest level down to which every ticket's mean early-stop step is
  earlier than the dense network's; None if the first pruned level's is not
  (or the run has no validation split)."""
  dense = levels[0].get("early_stop_step")
  if dense is None:
    return None
  last = None
  for entry in levels[1:]:
    if entry["early_stop_step"]["mean"] >= dense["mean"]:
      return last
    last = entry
  return last


def falls_from(levels, variant="random_reinit"):
  """The densest level from which `variant` stays more than HOLD_POINTS below
  dense through the sparsest level; None if it matches dense at the last."""
  first = None
  for entry in levels[1:]:
    if variant not in entry:
      return None
    if _holds(levels, entry, variant):
      first = None
    elif first is None:
      first = entry
  return first


def _gap(entry, variant) -> Dict[str, Any]:
  """Ticket minus `variant`, seed by seed (the same data order), in points."""
  ticket = np.asarray(entry["test_accuracy"]["per_seed"])
  other = np.asarray(entry[variant]["test_accuracy"]["per_seed"])
  return stats(ticket - other)


def _signed(stat) -> str:
  """report.fmt with the sign: '+1.71 ± 0.25 (n=3)' (points)."""
  n = len(stat["per_seed"])
  return (f"{100 * stat['mean']:+.2f}"
          + (f" ± {100 * stat['std']:.2f}" if n > 1 else "") + f" (n={n})")


def _within_factor(ours: float, paper: float, factor: float = 2.0) -> bool:
  return paper / factor <= ours <= paper * factor


def versus_rows(levels, paper: Optional[Paper], has_controls: Dict[str, bool]):
  """(rows of the table, [(verdict, sentence)]): verdict is 'agree',
  'differ' or 'untested'; the sentence says what ours show."""
  numbers = dict(paper.numbers) if paper else {}
  dense = levels[0]["test_accuracy"]
  last = levels[-1]
  sparsest = 100 * last["weights_remaining"]
  rows, verdicts = [], []

  def add(quantity, paper_text, ours_text, verdict, sentence):
    rows.append([quantity, paper_text, ours_text])
    if "the paper" not in sentence:
      sentence += f" (the paper: {paper_text})"
    verdicts.append((verdict, sentence))

  if "dense_accuracy" in numbers:
    text, (lo, hi) = numbers["dense_accuracy"]
    ours = 100 * dense["mean"]
    ok = lo - 1 <= ours <= hi + 1  # Within a point of the paper's range.
    add("dense test accuracy (%)", text, report.fmt(dense),
        "agree" if ok else "differ",
        f"dense accuracy {ours:.2f}% against the paper's {text}%")
  if "ticket_gain" in numbers:
    text, _ = numbers["ticket_gain"]
    best = max(levels[1:], key=lambda e: e["test_accuracy"]["mean"])
    gain = 100 * (best["test_accuracy"]["mean"] - dense["mean"])
    add("best ticket minus dense (points)", text,
        f"{gain:+.2f} (at {_pct(best)} of weights)",
        "agree" if gain > 0 else "differ",
        f"the best ticket is {gain:+.2f} points from dense (at {_pct(best)} "
        f"of weights; the paper: {text})")
  holds = holds_to(levels)
  if "holds_to" in numbers or not numbers:
    text, value = numbers.get("holds_to", ("–", None))
    if holds is None:
      ours_text = "none: the first pruned level is below dense"
    else:
      ours_text = (f"{_pct(holds)}"
                   + (" (every level run)" if holds is last else "")
                   + f": {report.fmt(holds['test_accuracy'])} vs dense "
                   f"{report.fmt(dense)}")
    h = 100 * holds["weights_remaining"] if holds else 100.0
    if value is None:
      verdict = "untested"
    elif h <= 2 * value:
      verdict = "agree"
    elif holds is last:
      verdict = "untested"
    else:
      verdict = "differ"
    sentence = (f"tickets match dense down to {h:.2f}% of weights" if holds
                else "tickets fall below dense at the first pruned level")
    if verdict == "untested" and value is not None:
      sentence += (f", the sparsest level run: the paper's {text} is beyond "
                   f"it")
    add(f"tickets match dense (within {HOLD_POINTS} points) down to "
        f"(% of weights)", text, ours_text, verdict, sentence)
  if "faster_to" in numbers and "early_stop_step" in levels[0]:
    text, value = numbers["faster_to"]
    fast = faster_to(levels)
    f = 100 * fast["weights_remaining"] if fast else 100.0
    ours_text = ("none" if fast is None else
                 f"{_pct(fast)}" + (" (every level run)" if fast is last
                                    else "") +
                 f": step {report.fmt(fast['early_stop_step'], 1, 0)} vs "
                 f"dense {report.fmt(levels[0]['early_stop_step'], 1, 0)}")
    verdict = ("agree" if f <= 2 * value else
               "untested" if fast is last else "differ")
    add("tickets stop early sooner than dense down to (% of weights)", text,
        ours_text, verdict,
        f"tickets reach their early-stop step sooner than dense down to "
        f"{f:.2f}% of weights" if fast else
        "the first pruned level's tickets do not stop early sooner than "
        "dense")
  if "reinit_falls_from" in numbers and has_controls["random_reinit"]:
    text, value = numbers["reinit_falls_from"]
    falls = falls_from(levels)
    f = 100 * falls["weights_remaining"] if falls else None
    held = holds_to(levels, "random_reinit")
    if falls is None:
      ours_text = f"never, down to {sparsest:.2f}%"
    else:
      ours_text = (f"{_pct(falls)}: "
                   f"{report.fmt(falls['random_reinit']['test_accuracy'])}")
    if value is None:  # "sooner than the tickets": falls before they do.
      ok = f is not None and (holds is None or
                              f > 100 * holds["weights_remaining"])
      verdict = "agree" if ok else "differ"
    elif f is None:
      verdict = "differ" if sparsest < value / 2 else "untested"
    else:
      verdict = "agree" if _within_factor(f, value) else "differ"
    sentence = ("random reinit " +
                (f"stays within {HOLD_POINTS} points of dense down to "
                 f"{100 * held['weights_remaining']:.2f}% and "
                 if held is not None else "") +
                (f"falls below {'it' if held is not None else 'dense'} "
                 f"from {f:.2f}% of weights" if f is not None
                 else f"never falls below dense (down to {sparsest:.2f}%)"))
    add(f"random reinit falls below dense (by > {HOLD_POINTS} points) from "
        f"(% of weights)", text, ours_text, verdict, sentence)
  for key, variant, name in (("ticket_sparse", "ticket", "ticket"),
                             ("random_sparse", "random_prune",
                              "random pruning")):
    if key not in numbers or (variant != "ticket" and
                              not has_controls[variant]):
      continue
    text, (lo, hi) = numbers[key]
    block = last if variant == "ticket" else last[variant]
    ours = 100 * block["test_accuracy"]["mean"]
    if sparsest > paper.at_remaining:
      verdict = "untested"
    else:
      verdict = "agree" if lo - 1 <= ours <= hi + 1 else "differ"
    add(f"{name} test accuracy (%) at the sparsest level", text,
        f"{report.fmt(block['test_accuracy'])} at {sparsest:.2f}% of weights",
        verdict, f"{name} reaches {ours:.2f}% at {100 - sparsest:.1f}% "
        f"sparsity (the paper: {text})")
  for variant in CONTROLS:
    if not has_controls[variant]:
      continue
    gap = _gap(last, variant)
    add(f"ticket minus {variant} at the sparsest level (points)",
        "> 0: the controls fall off sooner",
        f"{_signed(gap)} at {sparsest:.2f}% of weights",
        "agree" if gap["mean"] > 0 else "differ",
        f"at {sparsest:.2f}% of weights the ticket is "
        f"{100 * gap['mean']:+.2f} points vs {variant}")
  return rows, verdicts


def _reasons(config, summary, paper: Paper) -> List[str]:
  """The ways our protocol departs from the paper's, as clauses."""
  out = []
  if summary["dataset"] != paper.dataset:
    out.append(f"{summary['dataset']} instead of the paper's {paper.dataset}")
  if summary["model"] not in paper.models:
    out.append(f"{summary['model']} instead of {paper.model}")
  steps = paper.steps.get(summary["model"], paper.steps.get("*"))
  if steps and config.train.steps != steps:
    out.append(f"{config.train.steps:,} instead of {steps:,} steps per level")
  return out


def differences(config, summary, paper, verdicts) -> str:
  if paper is None:
    return ("No paper numbers to compare with: the config's reference names "
            "no source this report knows (imp_report.PAPERS), so only ours "
            "are shown.")
  groups = {v: [s for verdict, s in verdicts if verdict == v]
            for v in ("agree", "differ", "untested")}
  parts = []
  if groups["agree"]:
    parts.append("As in the paper: " + "; ".join(groups["agree"]) + ".")
  if groups["differ"]:
    parts.append("Unlike the paper: " + "; ".join(groups["differ"]) + ".")
  if groups["untested"]:
    parts.append("Not tested by this run: " + "; ".join(groups["untested"])
                 + ".")
  reasons = _reasons(config, summary, paper)
  if groups["differ"]:
    seeds = len(summary["seeds"])
    if seeds < 5:
      reasons.append(f"{seeds} seed{'s' if seeds > 1 else ''}, so gaps of a "
                     f"few tenths of a point are within the noise")
    parts.append("Likely reasons: " + "; ".join(reasons) + ".")
  elif reasons:
    parts.append("This run departs from the paper's protocol (" +
                 "; ".join(reasons) + "), yet agrees where it was tested.")
  return " ".join(parts)


# ---------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------
def write(path, config, summary):
  """report.md and figures from the workdir's summary.json (the run calls it
  last; `python -m jaxunknowns.report_cli` on a finished workdir)."""
  levels = summary["levels"]
  title = f"{config.model.name} on {config.data.name}"
  figures = [("Test accuracy at the end of training vs weights remaining: "
              "winning tickets and the controls, mean ± std over seeds",
              "accuracy_vs_sparsity.png")]
  plot_vs_sparsity(levels, "test_accuracy", "test accuracy at the end (%)",
                   os.path.join(path, figures[0][1]), title=title)
  has_es = any("early_stop_step" in e for e in levels)
  if has_es:
    figures += [("Early-stop iteration (minimum validation loss) vs weights "
                 "remaining", "early_stop_vs_sparsity.png"),
                ("Test accuracy at the early-stop iteration vs weights "
                 "remaining", "early_stop_accuracy_vs_sparsity.png")]
    plot_vs_sparsity(levels, "early_stop_step", "early-stop iteration",
                     os.path.join(path, figures[1][1]), scale=1.0, title=title)
    plot_vs_sparsity(levels, "early_stop_accuracy",
                     "test accuracy at early stop (%)",
                     os.path.join(path, figures[2][1]), title=title)
  variants = [v for v in CONTROLS if any(v in e for e in levels)]
  header = ["level", "weights remaining", "ticket"] + variants
  if has_es:
    header += ["ticket early-stop step"]
  rows = []
  for e in levels:
    row = [e["level"], f"{100 * e['weights_remaining']:.2f}%",
           report.fmt(e["test_accuracy"])]
    row += [report.fmt(e[v]["test_accuracy"]) if v in e else "–"
            for v in variants]
    if has_es:
      row.append(report.fmt(e.get("early_stop_step"), scale=1, digits=0))
    rows.append(row)
  details = ["### Test accuracy (%, mean ± std over seeds)\n\n"
             + report.markdown_table(header, rows)]
  if "instability" in summary:
    figures.append(("Instability (the test-error barrier between two copies "
                    "trained from step k) vs k: the dense network and IMP "
                    "tickets", "instability_vs_k.png"))
    plot_instability(summary["instability"],
                     os.path.join(path, "instability_vs_k.png"))
    details.append(_instability_section(summary["instability"]))

  reference = config.get("reference")
  claim = reference.get("claim", "") if reference is not None else ""
  paper = paper_of(claim) if claim else None
  has_controls = {v: v in variants for v in CONTROLS}
  versus, verdicts = versus_rows(levels, paper, has_controls)
  if "instability" in summary and summary["instability"].get("dense"):
    dense = summary["instability"]["dense"]
    a, b = dense[0], dense[-1]
    falls = (len(dense) > 1 and
             b["instability"]["mean"] < a["instability"]["mean"])
    ours = f"k={a['rewind_step']}: {report.fmt(a['instability'])}"
    if len(dense) > 1:
      ours += f" → k={b['rewind_step']}: {report.fmt(b['instability'])}"
      verdicts.append(("agree" if falls else "differ",
                       f"the dense network's instability "
                       f"{'falls' if falls else 'does not fall'} from "
                       f"{100 * a['instability']['mean']:.2f} at k="
                       f"{a['rewind_step']} to "
                       f"{100 * b['instability']['mean']:.2f} points at k="
                       f"{b['rewind_step']} (the paper: falls)"))
    else:
      ours += " (one k only)"
      verdicts.append(("untested", "the dense network's instability, "
                       "measured at one rewind step only"))
    versus.append(["dense instability (%) as the rewind step k grows",
                   "falls (Frankle et al. 2020)", ours])
  p = summary["pruning"]
  one_shot = p.get("one_shot_remaining") or 0.0
  pruning_text = (
      f"one-shot {p['method']} pruning to {100 * one_shot:.1f}% of the "
      f"weights" if one_shot else
      f"{p['method']} pruning of {100 * p['fraction']:.0f}% of the remaining "
      f"weights per level"
      + (f" (layer rates {p['layer_rates']})" if p["layer_rates"] else ""))
  config_text = (
      f"Iterative magnitude pruning of `{config.model.name}` "
      f"({summary['parameters']['trainable']:,} trainable parameters) on "
      f"`{config.data.name}`: {pruning_text}, rewinding to step "
      f"{p['rewind_step']}, {p['levels']} levels, {config.train.steps} steps "
      f"per level, {config.optim.name} lr {config.optim.lr}, batch "
      f"{config.train.batch_size}; {len(summary['seeds'])} seeds, each "
      f"level's ticket and controls trained together in one program.")
  speeds = [e["steps_per_second"] for e in levels if e.get("steps_per_second")]
  extra = (f"{len(levels)} levels (dense included) at {np.mean(speeds):.0f} "
           f"steps/s on average, all runs of a level at once." if speeds
           else "")
  report.write_page(path, report.Page(
      title=f"imp: {title}",
      claim=claim or "None: this config quotes no paper.",
      config=config_text,
      figures=figures,
      versus=(["quantity", "paper", "ours (mean ± std over seeds)"], versus),
      differences=differences(config, summary, paper, verdicts),
      details=details,
      run=report.run_line(summary, extra)))


def _instability_section(inst):
  rows = [[d["rewind_step"], report.fmt(d["instability"]),
           report.fmt(d["endpoint_error"])] for d in inst.get("dense", [])]
  rows += [[f"{t['rewind_step']} (ticket, {100 * t['weights_remaining']:.1f}%)",
            report.fmt(t["instability"]), report.fmt(t["endpoint_error"])]
           for t in inst.get("tickets", [])]
  return ("### Instability (linear mode connectivity)\n\nTwo copies trained "
          "from the weights at step k with different data orders; "
          "instability = maximum test error on the line between them minus "
          "the mean error of the two ends.\n\n"
          + report.markdown_table(["k", "instability (%)", "endpoint error (%)"],
                                  rows))
