"""report.md, sharpness.png and flow.png of `edge_of_stability`, from
summary.json alone."""

import contextlib
import os

import numpy as np

from jaxunknowns import report
from jaxunknowns.implicit import edge_of_stability as eos
from jaxunknowns.implicit import papers
from jaxunknowns.metrics import stats
from jaxunknowns.report import compare

REFERENCES = (papers.COHEN_SHARPENING, papers.COHEN_HOVER, papers.COHEN_LOSS,
              papers.COHEN_FLOW, papers.COHEN_MOMENTUM)
CAPTIONS = {"sharpness.png": "Sharpness (mean over seeds), each threshold "
            "dashed, the full-batch train loss beneath (as Cohen et al.'s "
            "Fig. 1)", "flow.png": "λ_max against time t = η × step: "
            "gradient flow and the GD runs"}


def label(r):
  return f"{r['kind']} η={r['lr']:.3g}" + (f" β={r['momentum']:g}"
                                           if r["momentum"] else "")


def curve(ax, r, x_scale=1.0, threshold=True):
  c = r["curves"]
  line, = ax.plot(np.asarray(c["sharp_steps"]) * x_scale,
                  np.mean(c["lambda_max"], 0), label=label(r))
  _ = threshold and ax.axhline(r["threshold"], ls="--", color=line.get_color())
  return line.get_color()


def plot(path, summary):
  losses = list(dict.fromkeys(r["loss"] for r in summary["runs"]))
  n, flow = len(losses), summary["flow"]
  with report.figure(os.path.join(path, "sharpness.png"), 2 * n, (6, 3.6),
                     cols=n) if n else contextlib.nullcontext() as axes:
    for i, loss in enumerate(losses):
      for r in (r for r in summary["runs"] if r["loss"] == loss):
        axes[n + i].semilogy(r["curves"]["loss_steps"], np.mean(
            r["curves"]["loss"], 0), color=curve(axes[i], r), label=label(r))
      axes[i].set(title=f"{loss}: sharpness", ylabel="λ_max")
      axes[n + i].set(title=f"{loss}: train loss", xlabel="step")
  with report.figure(os.path.join(path, "flow.png"), 1, (6.4, 4)) as (ax,):
    for r in summary["runs"]:
      if r["loss"] == flow["loss"] and r["kind"] == "gd":
        curve(ax, r, r["lr"])
    curve(ax, flow, flow["lr"], threshold=False)
    ax.set(title=f"{flow['loss']}: gradient flow vs GD", ylabel="λ_max",
           xlabel="time t = η × step", xlim=(0, flow["lr"] * flow["steps"]))
  return list(CAPTIONS)[not n:]


def comparisons(summary, config):
  e, out = config.eos, report.Rows()
  for r in summary["runs"]:
    out.ours = {"data": summary["dataset"], "model": summary["model"],
                "train examples": summary["train_examples"], "batch": "full",
                "loss": r["loss"]}
    name, n = f"{r['loss']}, {label(r)}", len(r["reached"]["per_seed"])
    # A seed that starts at the edge (a sharper dataset or model than the
    # step sizes were chosen for) "reaches" it at step 0: no sharpening to
    # see, and its loss "on reaching" is the initial loss.
    above = sum(x >= e.near for x in r["init_ratio"]["per_seed"])
    edge = f"{e.near:g} × " + ("2/η" if r["kind"] == "gd" else "the threshold")
    start = f"{above}/{n} seeds start at λ_max(0) ≥ {edge}"
    if r["kind"] == "gd":
      out.check(f"{name}: λ_max from λ_max(0) to {e.near:g} × 2/η",
                papers.COHEN_SHARPENING,
                f"λ_max(0) = {report.fmt(r['init_ratio'], 1, 2, n=False)}"
                f" × 2/η; {r['reached']['mean'] * n:.0f}/{n} seeds reach it, "
                f"at step {reach_steps(r['reach_step'])}",
                (None, start) if above else
                compare.at_least(r["reached"], 1.0, scale=1.0), "all seeds",
                start if above else "")
    out.check(f"{name}: λ_max / threshold, second half", papers.COHEN_HOVER
              if r["kind"] == "gd" else papers.COHEN_MOMENTUM,
              report.fmt(r["ratio_last_half"], 1, 3), compare.within(
                  r["ratio_last_half"], {"mean": 1.0}, a_name="ours",
                  b_name="1", tolerance=e.tolerance, scale=1.0),
              f"≈ 1 (threshold {r['threshold']:.3g})")
    # The loss "after reaching" of a seed that never reached is its whole
    # run's: no edge of stability to judge the claim by.
    never = round(n * (1 - r["reached"]["mean"]))
    why = "; ".join([f"{never}/{n} seeds never reach {edge}"]
                    * bool(never) + [start] * bool(above))
    undecided = never or above
    # "At the end": the median over the run's last tenth (eos.end_loss),
    # from the curves, so that one spike at the last recording cannot
    # decide the row; the table keeps the last recorded value.
    c = r["curves"]
    end = stats(eos.end_loss(c["loss_steps"], c["loss"]))
    out.versus(f"{name}: loss on reaching vs at the end", papers.COHEN_LOSS,
               r["loss_at_reach"], end, ("reach", "end (median of the last "
                                         f"{eos.END_WINDOW:.0%})"),
               rule=compare.undecided(why) if undecided else None,
               why=why, scale=1.0, sig=True, paper="falls")
    out.check(f"{name}: rises of the loss after reaching", papers.COHEN_LOSS,
              report.fmt(r["loss_rises"], 1, 1), (None, why) if undecided else
              compare.at_least(r["loss_rises"], 1.0, scale=1.0),
              f"≥ 1 (non-monotone; loss every {e.loss_every} steps)", why)
  out.ours = None
  for v in summary["flow_versus_gd"]:
    # GD below the edge at t (data flatter than the step sizes were chosen
    # for): flow above GD is then no sign of GD being held at 2/η.
    late, gd = _not_at_edge_by(summary, v), v["gd"]["mean"]
    why = (f"{late} seeds of GD η={v['lr']:.3g} do not reach {e.near:g} × "
           f"2/η by step {v['gd_step']}" if late else
           # Started above the edge, then fell away from it: not held there.
           f"GD's λ_max at t is {gd:.3g}, below {e.near:g} × 2/η"
           if gd < e.near * v["threshold"] else "")
    # GD's λ_max is measured every eos.every steps: at the measured step
    # nearest t, whose own time the row names where it is not t.
    t_gd = v["lr"] * v["gd_step"]
    at_gd = (f", GD's at step {v['gd_step']}, t = {t_gd:.3g}"
             if abs(t_gd - v["time"]) > 1e-9 * v["time"] else "")
    out.versus(f"λ_max at t = {v['time']:g}: flow vs GD η={v['lr']:.3g} (2/η "
               f"= {v['threshold']:.3g}{at_gd})", papers.COHEN_FLOW, v["flow"],
               v["gd"], ("flow", "GD"), scale=1.0,
               rule=compare.undecided(why) if why else None, why=why,
               paper="flow above 2/η, GD at it")
  return out


def reach_steps(stat) -> str:
  """The mean step of reaching the edge, or per seed where one never did
  ('200, never')."""
  steps = stat["per_seed"]
  if None not in steps:
    return report.fmt(stat, 1, 0, n=False)
  return ", ".join("never" if s is None else f"{s:g}" for s in steps)


def _not_at_edge_by(summary, v) -> str:
  """'k/n' seeds of the GD run compared with the flow in `v` that have not
  reached the edge by its step (never, or later), or '' if all have. (A
  seed that starts above it, at step 0, is judged by GD's λ_max at t.)"""
  loss = summary.get("flow", {}).get("loss", "mse")
  run = next((r for r in summary["runs"] if r["kind"] == "gd"
              and r["loss"] == loss and r["lr"] == v["lr"]), None)
  if run is None:
    return ""
  steps = run["reach_step"]["per_seed"]
  late = sum(s is None or s > v["gd_step"] for s in steps)
  return f"{late}/{len(steps)}" if late else ""


COLUMNS = {"init_ratio": "λ_max(0)/thr", "reach_step": "reach step",
           "ratio_last_half": "λ_max/thr, 2nd half", "max_ratio": "max "
           "λ_max/thr", "loss_at_reach": "loss at reach", "loss_end":
           "loss at the last step", "loss_rises": "loss rises", "accuracy_end": "train acc"}


def optimizer_words(summary) -> str:
  """The config line's optimizer: optim.lr is no run's (each takes its η
  from the eos grids), and a β is named only where a run used it."""
  runs = [*summary["runs"], *summary.get("diverged", ())]
  betas = lambda k: ", ".join(sorted({f"{r['momentum']:g}" for r in runs
                                      if r["kind"] == k}))
  names = ["GD" if k == "gd" else f"{k} (β = {betas(k)})"
           for k in ("gd", "momentum", "nesterov")
           if any(r["kind"] == k for r in runs)]
  return f"{' and '.join(names)} at each run's η below"


def write(path, config, summary):
  e, f = config.eos, summary["flow"]
  rows = [[r["loss"], label(r), f"{r['threshold']:.3g}"] + [report.fmt(
      r[k], 1, 3, sig=True, n=False) for k in COLUMNS] for r in summary["runs"]]
  residual = max([r["lanczos_residual_max"] for r in summary["runs"]] +
                 [f["lanczos_residual_max"]])
  # A run past the edge that diverged (no curve, no comparison): when, and
  # how far above its threshold it started.
  diverged = [[r["loss"], label(r), f"{r['threshold']:.3g}", report.fmt(
      r["init_ratio"], 1, 3, sig=True, n=False), ", ".join(
          "—" if t is None else f"{t:g}" for t in r["diverged_at"])]
              for r in summary.get("diverged", ())]
  report.write(
      path, config, summary, references=REFERENCES,
      optimizer=optimizer_words(summary),
      setup=(f"full-batch GD, {summary['steps']} steps, each η with every "
             f"seed in one program; λ_max every {e.every} steps by "
             f"{e.lanczos_steps} Lanczos steps on the whole training loss "
             f"(largest relative residual {residual:.1g}); \"reach\": λ_max "
             f"≥ {e.near:g} × threshold; thresholds 2/η, (2 + 2β)/η (Polyak),"
             " (2 + 2β)/((1 + 2β)η) (Nesterov); gradient flow: Euler steps "
             f"η = {f['lr']:g} to t = {f['lr'] * f['steps']:g} (largest "
             f"η·λ_max {f['max_lr_lambda']:.2f})"),
      figures=[(CAPTIONS[name], name) for name in plot(path, summary)],
      comparisons=comparisons(summary, config),
      details=["### Every run (mean ± std over seeds)\n\n" + report.
               markdown_table(["loss", "run", "threshold", *COLUMNS.values()],
                              rows)] + ["### Diverged runs (left out above)"
                                        "\n\n" + report.markdown_table(
          ["loss", "run", "threshold", COLUMNS["init_ratio"],
           "diverged at step, per seed (—: did not)"], diverged)] * bool(
               diverged),
      run=" ".join(f"{n}: {s['train_seconds']:.0f} s." for n, s in
                   summary["stages"].items()))
