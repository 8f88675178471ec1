"""Summary numbers, figures (in the style of Santurkar et al.'s Figs. 2-4) and
report.md of a `bn_smoothness` workdir, built from its metrics.jsonl."""

import os
from typing import Any, Dict, List, Mapping

from jaxunknowns.report.plots import plt  # pylint: disable=g-import-not-at-top
import numpy as np

from jaxunknowns import report
from jaxunknowns.metrics import curves, read_metrics

LANDSCAPE = ("loss", "loss_min", "loss_max", "loss_range", "gpred_min",
             "gpred_max", "beta", "grad_norm")
LABELS = {"none": "no BN", "batch": "BN", "noisy_batch": "noisy BN",
          "group": "GroupNorm", "layer": "LayerNorm"}


def _label(arm):
  return LABELS.get(arm, arm)


def _per_step(rows, split, name, arm) -> Dict[int, np.ndarray]:
  """{step: values over seeds} for steps every seed has."""
  per_seed = curves(rows, split, name, arm=arm)
  if not per_seed:
    return {}
  steps = sorted(set.intersection(*[set(c) for c in per_seed.values()]))
  return {t: np.array([float(per_seed[s][t]) for s in sorted(per_seed)])
          for t in steps}


def _stat(values) -> Dict[str, Any]:
  v = np.asarray(values, np.float64)
  return {"mean": float(v.mean()), "std": float(v.std()),
          "per_seed": [float(x) for x in v]}


def summarize(path: str, config, results: Mapping[str, Mapping]) -> Dict:
  rows = read_metrics(path)
  arms = list(results)
  out = {"experiment": "bn_smoothness", "dataset": config.data.name,
         "model": config.model.name, "optimizer": config.optim.name,
         "lr": config.optim.lr, "steps": config.train.steps,
         "step_sizes": list(config.smoothness.step_sizes),
         "probe_size": config.smoothness.probe_size or config.train.batch_size,
         "arms": {}}
  for arm in arms:
    res = results[arm]
    arm_out = {"final": res["final"], "parameters": res["parameters"],
               "wall_time_s": res["wall_time_s"],
               "steps_per_second": res["steps_per_second"],
               "layers": res["layers"], "smoothness": {}, "ics": {}}
    for name in LANDSCAPE:
      arm_out["smoothness"][name] = {
          str(t): _stat(v) for t, v in _per_step(rows, "smoothness", name,
                                                 arm).items()}
    for layer in res["layers"]:
      for kind in ("l2", "cos", "gnorm"):
        arm_out["ics"][f"{kind}_{layer}"] = {
            str(t): _stat(v) for t, v in _per_step(
                rows, "ics", f"{kind}_{layer}", arm).items()}
    out["arms"][arm] = arm_out
  out["comparison"] = compare(out["arms"])
  out["reference"] = config.reference.to_dict()
  return out


def compare(arms: Mapping[str, Mapping]) -> Dict[str, Any]:
  """At how many measured steps the BN arm's seed-mean is below the no-BN
  arm's, for each landscape measure (steps > 0: at step 0 both are
  untrained nets of different architectures; reported separately)."""
  if "batch" not in arms or "none" not in arms:
    return {}
  out = {}
  for name in ("loss_range", "gpred_max", "beta"):
    bn, plain = arms["batch"]["smoothness"][name], arms["none"]["smoothness"][name]
    steps = sorted((int(t) for t in bn if t in plain), key=int)
    later = [t for t in steps if t > 0]
    lower = [t for t in later if bn[str(t)]["mean"] < plain[str(t)]["mean"]]
    ratio = [bn[str(t)]["mean"] / max(plain[str(t)]["mean"], 1e-30)
             for t in later]
    out[name] = {"bn_lower_at": len(lower), "measured_steps": len(later),
                 "median_ratio_bn_over_none": float(np.median(ratio))
                 if ratio else None,
                 "at_step_0": ({"bn": bn["0"]["mean"], "none": plain["0"]["mean"]}
                               if "0" in bn and "0" in plain else None)}
  # ICS per layer, read the same way: is it lower with BN? (The paper: no.)
  ics = {}
  for layer in arms["batch"]["layers"]:
    bn_l2 = arms["batch"]["ics"].get(f"l2_{layer}", {})
    plain_l2 = arms["none"]["ics"].get(f"l2_{layer}", {})
    bn_cos = arms["batch"]["ics"].get(f"cos_{layer}", {})
    plain_cos = arms["none"]["ics"].get(f"cos_{layer}", {})
    later = [t for t in bn_l2 if t in plain_l2 and int(t) > 0]
    if not later:
      continue
    ics[layer] = {
        "bn_l2_lower_at": sum(bn_l2[t]["mean"] < plain_l2[t]["mean"]
                              for t in later),
        "bn_cos_higher_at": sum(bn_cos[t]["mean"] > plain_cos[t]["mean"]
                                for t in later),
        "measured_steps": len(later),
        "median_l2": {"bn": float(np.median([bn_l2[t]["mean"] for t in later])),
                      "none": float(np.median([plain_l2[t]["mean"]
                                               for t in later]))},
        "median_cos": {"bn": float(np.median([bn_cos[t]["mean"] for t in later])),
                       "none": float(np.median([plain_cos[t]["mean"]
                                                for t in later]))}}
  out["ics"] = ics
  return out


# -----------------------------------------------------------------------------
# Figures
# -----------------------------------------------------------------------------
def _mean_curve(stat_by_step):
  steps = sorted(int(t) for t in stat_by_step)
  return (np.array(steps), np.array([stat_by_step[str(t)]["mean"] for t in steps]),
          np.array([stat_by_step[str(t)]["std"] for t in steps]))


def landscape_figure(summary, path):
  """Fig. 4 style: (a) the band of L(theta - eta g) over eta, (b) the band of
  ||grad L(theta) - grad L(theta - eta g)|| over eta, (c) beta-smoothness."""
  fig, axes = plt.subplots(1, 3, figsize=(15, 4))
  for arm, a in summary["arms"].items():
    s = a["smoothness"]
    for ax, lo, hi in ((axes[0], "loss_min", "loss_max"),
                       (axes[1], "gpred_min", "gpred_max")):
      steps, low, _ = _mean_curve(s[lo])
      _, high, _ = _mean_curve(s[hi])
      if len(steps):
        band = ax.fill_between(steps, low, high, alpha=0.35, label=_label(arm))
        ax.plot(steps, high, color=band.get_facecolor()[0][:3], lw=0.8)
        ax.plot(steps, low, color=band.get_facecolor()[0][:3], lw=0.8)
    steps, mean, std = _mean_curve(s["beta"])
    if len(steps):
      line, = axes[2].plot(steps, mean, label=_label(arm))
      axes[2].fill_between(steps, mean - std, mean + std, alpha=0.2,
                           color=line.get_color())
  etas = summary["step_sizes"]
  axes[0].set_title(f"(a) loss landscape: L(θ − ηg), η ∈ [{min(etas)}, {max(etas)}]")
  axes[0].set_ylabel("loss (band: min..max over η)")
  axes[1].set_title("(b) gradient predictiveness")
  axes[1].set_ylabel("‖∇L(θ) − ∇L(θ − ηg)‖ (band over η)")
  axes[2].set_title("(c) effective β-smoothness")
  axes[2].set_ylabel("max_η ‖Δ∇L‖ / ‖ηg‖ (mean ± std)")
  for ax in axes:
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  report.save_figure(fig, path)


def ics_figure(summary, path):
  """Fig. 3 style: ||G - G'|| (top) and cos(G, G') (bottom) per layer."""
  arms = summary["arms"]
  layer_lists = [a["layers"] for a in arms.values() if a["layers"]]
  if not layer_lists:
    return False
  layer_names = layer_lists[0]
  n = len(layer_names)
  fig, axes = plt.subplots(2, n, figsize=(3.2 * n, 6), squeeze=False)
  for j, layer in enumerate(layer_names):
    for arm, a in arms.items():
      for row, kind in enumerate(("l2", "cos")):
        stat = a["ics"].get(f"{kind}_{layer}", {})
        steps, mean, std = _mean_curve(stat)
        if len(steps):
          line, = axes[row, j].plot(steps, mean, label=_label(arm))
          axes[row, j].fill_between(steps, mean - std, mean + std, alpha=0.2,
                                    color=line.get_color())
    # cos <= 1; without a fixed top, layer 1's exact 1.0 is drawn as
    # rounding noise magnified to fill the panel.
    axes[1, j].set_ylim(min(axes[1, j].get_ylim()[0], 0.0), 1.05)
    axes[0, j].set_ylim(bottom=0.0)
    axes[0, j].set_title(f"layer {j + 1}: {layer}", fontsize=9)
    axes[1, j].set_xlabel("step")
  axes[0, 0].set_ylabel("‖G − G′‖")
  axes[1, 0].set_ylabel("cos(G, G′)")
  for ax in axes.flat:
    ax.grid(alpha=0.3)
  axes[0, 0].legend(fontsize=8)
  fig.tight_layout()
  report.save_figure(fig, path)
  return True


def accuracy_figure(rows, arms, path):
  """Fig. 2a style: training (minibatch) and test accuracy per arm."""
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
  for arm in arms:
    report.plot_band(axes[0], curves(rows, "minibatch", "accuracy", arm=arm),
                     _label(arm), scale=100)
    report.plot_band(axes[1], curves(rows, "test", "accuracy", arm=arm),
                     _label(arm), scale=100)
  axes[0].set_title("training accuracy (minibatches)")
  axes[1].set_title("test accuracy")
  for ax in axes:
    ax.set_xlabel("step")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  report.save_figure(fig, path)


# -----------------------------------------------------------------------------
# report.md
# -----------------------------------------------------------------------------
def _pick_steps(stat_by_step, count=4) -> List[int]:
  steps = sorted(int(t) for t in stat_by_step)
  if len(steps) <= count:
    return steps
  idx = np.unique(np.linspace(0, len(steps) - 1, count).round().astype(int))
  return [steps[i] for i in idx]


def _ms(stat, digits=3):
  if not stat:
    return "–"
  return f"{stat['mean']:.{digits}g} ± {stat['std']:.{digits - 1}g}"


def _seed_ratio(bn_by_step, plain_by_step):
  """Per seed, the median over measured steps > 0 of BN / no-BN (seeds
  paired by position: both arms train the same seeds on the same probe
  batch), as {mean, std, per_seed}; None when no step is shared."""
  later = sorted((t for t in bn_by_step if t in plain_by_step and int(t) > 0),
                 key=int)
  if not later:
    return None
  bn = np.array([bn_by_step[t]["per_seed"] for t in later], np.float64)
  plain = np.array([plain_by_step[t]["per_seed"] for t in later], np.float64)
  return _stat(np.median(bn / np.maximum(plain, 1e-30), axis=0))


def _paired_accuracy(arms, a, b):
  """Test accuracy of arm a minus arm b, per seed, in points."""
  return _stat(100 * np.subtract(arms[a]["final"]["test"]["accuracy"]
                                 ["per_seed"],
                                 arms[b]["final"]["test"]["accuracy"]
                                 ["per_seed"]))


def _ics_layers(comp):
  """Layers with earlier layers (layer 1's ICS is 0 in every arm)."""
  return {layer: c for layer, c in comp.get("ics", {}).items()
          if not c["median_l2"]["bn"] == c["median_l2"]["none"] == 0.0}


LANDSCAPE_ROWS = (
    ("loss_range", "loss variation (range of L(θ − ηg) over η)", "Fig. 4a"),
    ("gpred_max", "gradient predictiveness (max over η of the gradient's "
                  "change)", "Fig. 4b"),
    ("beta", "effective β-smoothness", "Fig. 4c"))


def versus_rows(summary):
  arms, comp, rows = summary["arms"], summary.get("comparison") or {}, []
  if comp:
    for name, label, fig in LANDSCAPE_ROWS:
      c = comp[name]
      ratio = _seed_ratio(arms["batch"]["smoothness"][name],
                          arms["none"]["smoothness"][name])
      rows.append([f"{label}: BN / no BN, median over steps",
                   f"below 1 along all of training ({fig})",
                   f"{report.fmt(ratio, scale=1.0, digits=3)}; BN lower at "
                   f"{c['bn_lower_at']} of {c['measured_steps']} steps"])
    for layer, c in _ics_layers(comp).items():
      ratio = _seed_ratio(arms["batch"]["ics"][f"l2_{layer}"],
                          arms["none"]["ics"][f"l2_{layer}"])
      rows.append([f"ICS ‖G − G′‖ of {layer}: BN / no BN, median over steps",
                   "not below 1 in VGG, nor cos(G, G′) closer to 1; above 1 "
                   "in deep linear nets (Fig. 3)",
                   f"{report.fmt(ratio, scale=1.0, digits=3)}; BN lower at "
                   f"{c['bn_l2_lower_at']} of {c['measured_steps']} steps, "
                   f"cos(G, G′) higher with BN at {c['bn_cos_higher_at']}"])
  if "batch" in arms and "none" in arms:
    rows.append(["BN minus no BN, final test accuracy (points)",
                 "above (Fig. 2)",
                 report.fmt(_paired_accuracy(arms, "batch", "none"),
                            scale=1.0)])
  if "batch" in arms and "noisy_batch" in arms:
    rows.append(["noisy BN minus BN, final test accuracy (points)",
                 "close to 0: noisy BN trains almost as well (Fig. 2)",
                 report.fmt(_paired_accuracy(arms, "noisy_batch", "batch"),
                            scale=1.0)])
  if not rows:
    rows.append(["–", "–", "– (needs a `none` and a `batch` arm)"])
  return rows


def differences(config, summary) -> str:
  arms, comp, out = summary["arms"], summary.get("comparison") or {}, []
  if not comp:
    return ("The run has no BN and no-BN arms side by side, so the paper's "
            "comparisons are not made.")
  for name, label, _ in LANDSCAPE_ROWS:
    c = comp[name]
    k, n = c["bn_lower_at"], c["measured_steps"]
    verdict = ("as in the paper" if k == n else
               "mostly, as in the paper" if 2 * k > n else
               "unlike the paper")
    out.append(f"{label} is lower with BN at {k} of {n} measured steps "
               f"({verdict})")
  higher0 = [label.split(" (")[0] for name, label, _ in LANDSCAPE_ROWS
             if comp[name]["at_step_0"] and comp[name]["at_step_0"]["bn"] >
             comp[name]["at_step_0"]["none"]]
  if higher0:
    out.append(f"at step 0, before any training, BN is higher in "
               f"{', '.join(higher0)}")
  ics = _ics_layers(comp)
  lower = [l for l, c in ics.items() if 2 * c["bn_l2_lower_at"] >
           c["measured_steps"]]
  if ics:
    out.append(
        (f"ICS ‖G − G′‖ is lower with BN at most steps in {len(lower)} of "
         f"{len(ics)} layers ({', '.join(lower)}), unlike the paper's VGG "
         f"(not lower with BN)"
         if lower else
         "ICS ‖G − G′‖ is not lower with BN at most steps in any layer, as "
         "in the paper's VGG"))
    closer = [l for l, c in ics.items() if 2 * c["bn_cos_higher_at"] >
              c["measured_steps"]]
    out.append(f"cos(G, G′) is closer to 1 with BN at most steps in "
               f"{len(closer)} of {len(ics)} layers"
               + (", unlike the paper's VGG" if closer else
                  ", as in the paper's VGG"))
  if "batch" in arms and "none" in arms:
    d = _paired_accuracy(arms, "batch", "none")
    out.append(f"BN ends {d['mean']:+.2f} ± {d['std']:.2f} points from no BN "
               f"in final test accuracy"
               + (", above it as in the paper" if d["mean"] > 0 else
                  ", not above it, unlike the paper"))
  if "noisy_batch" in arms:
    d = _paired_accuracy(arms, "noisy_batch", "batch")
    plain = _paired_accuracy(arms, "noisy_batch", "none")
    out.append(f"noisy BN ends {d['mean']:+.2f} ± {d['std']:.2f} points from "
               f"BN and {plain['mean']:+.2f} ± {plain['std']:.2f} from no BN"
               + (", almost as well as BN, as in the paper"
                  if abs(d["mean"]) < 1.0 else
                  " (over 1 point below BN: less close than the paper's "
                  "'almost as well')" if d["mean"] < 0 else
                  ", above BN"))
  text = "; ".join(out)
  noise = (f"; and our noisy BN's noise (shift N(0, "
           f"{config.model.get('noise_mean_std', 0.0)}²), scale exp(N(0, "
           f"{config.model.get('noise_scale_std', 0.0)}²)) at every BN) is "
           f"our own choice of strength" if "noisy_batch" in arms else "")
  return (text[0].upper() + text[1:] + f". Likely reasons for the "
          f"differences: the {config.model.name} on {config.data.name}, "
          f"{config.train.steps} steps of {config.optim.name} at lr "
          f"{config.optim.lr} for every arm, is not the paper's VGG on "
          f"CIFAR-10; ‖G − G′‖ is not normalized by the gradient's size, "
          f"which BN changes (the ICS tables give cos(G, G′) too)" + noise
          + ".")


def write_report(path: str, config, summary):
  """report.md, landscape.png, ics.png and accuracy.png from summary.json
  and metrics.jsonl."""
  rows = read_metrics(path)
  arms = summary["arms"]
  landscape_figure(summary, os.path.join(path, "landscape.png"))
  has_ics = ics_figure(summary, os.path.join(path, "ics.png"))
  accuracy_figure(rows, list(arms), os.path.join(path, "accuracy.png"))
  first = next(iter(arms.values()))
  steps = _pick_steps(first["smoothness"]["loss_range"])
  figures = [("Training (minibatch) and test accuracy per arm, mean ± std "
              "over seeds (as the paper's Fig. 2)", "accuracy.png"),
             ("Landscape along the gradient: loss band over η, gradient "
              "predictiveness band over η, β-smoothness (as the paper's "
              "Fig. 4)", "landscape.png")]
  if has_ics:
    figures.append(("ICS per layer: ‖G − G′‖ (top) and cos(G, G′) (bottom), "
                    "mean ± std over seeds (as the paper's Fig. 3)",
                    "ics.png"))
  details = []
  table = []
  for arm, a in arms.items():
    f = a["final"]
    table.append([_label(arm), report.fmt(f["test"]["accuracy"]),
                  report.fmt(f.get("train", {}).get("accuracy")),
                  f"{a['parameters']['trainable']:,}",
                  f"{a['wall_time_s']:.0f}"])
  details.append("### Final accuracy (mean ± std over seeds)\n\n" +
                 report.markdown_table(["arm", "test acc (%)",
                                        "train acc (%)", "params",
                                        "wall time (s)"], table))
  table = []
  for arm, a in arms.items():
    s = a["smoothness"]
    for t in steps:
      table.append([_label(arm), t, _ms(s["loss"].get(str(t))),
                    _ms(s["loss_range"].get(str(t))),
                    _ms(s["gpred_max"].get(str(t))),
                    _ms(s["beta"].get(str(t)))])
  details.append(
      "### Landscape along the gradient (Fig. 4)\n\n"
      "loss range = max − min over η of L(θ − ηg); grad pred = max over η of "
      "‖∇L(θ) − ∇L(θ − ηg)‖; β = max over η of that / ‖ηg‖.\n\n" +
      report.markdown_table(["arm", "step", "L(θ)", "loss range",
                             "grad pred (max)", "β-smoothness"], table))
  comp = summary.get("comparison") or {}
  if comp:
    lines = []
    for name, label in (("loss_range", "loss variation"),
                        ("gpred_max", "gradient predictiveness (max change)"),
                        ("beta", "β-smoothness")):
      c = comp[name]
      lines.append(f"- {label}: BN below no-BN at {c['bn_lower_at']} of "
                   f"{c['measured_steps']} measured steps after step 0; "
                   f"median ratio BN / no-BN {c['median_ratio_bn_over_none']:.3g}"
                   + (f"; at step 0 BN {c['at_step_0']['bn']:.3g} vs no-BN "
                      f"{c['at_step_0']['none']:.3g}" if c["at_step_0"] else ""))
    for layer, c in _ics_layers(comp).items():
      lines.append(
          f"- ICS of {layer}: ‖G − G′‖ lower with BN at {c['bn_l2_lower_at']} "
          f"of {c['measured_steps']} steps (median BN {c['median_l2']['bn']:.3g}"
          f" vs no-BN {c['median_l2']['none']:.3g}); cos(G, G′) higher with BN"
          f" at {c['bn_cos_higher_at']} (median BN {c['median_cos']['bn']:.3g} "
          f"vs no-BN {c['median_cos']['none']:.3g})")
    accs = ", ".join(f"{_label(a)} {report.fmt(arms[a]['final']['test']['accuracy'])}"
                     for a in arms)
    lines.append(f"- final test accuracy (%): {accs}")
    details.append("### BN vs no BN, step by step\n\n"
                   "Medians over the measured steps of the seed-mean curves."
                   "\n\n" + "\n".join(lines))
  if has_ics:
    layer_names = first["layers"]
    table = []
    for arm, a in arms.items():
      for t in steps:
        cells = [f"{_ms(a['ics'].get(f'l2_{l}', {}).get(str(t)), 2)} / "
                 f"{_ms(a['ics'].get(f'cos_{l}', {}).get(str(t)), 3)}"
                 for l in layer_names]
        table.append([_label(arm), t] + cells)
    details.append(
        "### Internal covariate shift (Fig. 3)\n\n"
        "Per layer: ‖G − G′‖ / cos(G, G′), G′ the layer's gradient after "
        "every earlier layer took the trainer's step (mean ± std over "
        "seeds). Layer 1 has no earlier layers (ICS 0 by definition).\n\n" +
        report.markdown_table(["arm", "step"] + [f"{j + 1}: {l}" for j, l in
                                                 enumerate(layer_names)], table))
  ref = config.get("reference")
  claim = ((ref.get("claim") if ref else None)
           or (summary.get("reference") or {}).get("claim") or "–")
  report.write_page(path, report.Page(
      title=f"bn_smoothness: {config.model.name} on {config.data.name}",
      claim=claim,
      config=(
          f"`{config.model.name}` on `{config.data.name}`, "
          f"{config.optim.name} lr {config.optim.lr}, batch "
          f"{config.train.batch_size}, {config.train.steps} steps, "
          f"{len(summary['seeds'])} seeds per arm trained at once; arms "
          f"(model.norm): "
          f"{', '.join(_label(a) + f' (`{a}`)' for a in arms)}. Measured "
          f"every {config.smoothness.every} steps on a fixed probe batch of "
          f"{summary['probe_size']} training examples in train mode (batch "
          f"statistics), step sizes η ∈ {tuple(summary['step_sizes'])}. "
          f"Noisy BN: per activation and step, scale exp(N(0, "
          f"{config.model.get('noise_scale_std', 0.0)}²)) and shift N(0, "
          f"{config.model.get('noise_mean_std', 0.0)}²)."),
      figures=figures,
      versus=(["quantity", "paper (VGG on CIFAR-10; direction only)",
               "ours (mean ± std over seeds)"], versus_rows(summary)),
      differences=differences(config, summary),
      details=details,
      run=report.run_line(summary, "Per arm: " + ", ".join(
          f"{_label(a)} {arms[a]['wall_time_s']:.0f} s" for a in arms) + ".")))
