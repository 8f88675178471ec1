"""Numbers over seeds, markdown tables, the machine-and-time line."""

from typing import Any, Mapping, Optional, Sequence, Tuple

from jaxunknowns.metrics import sample_std


def fmt(stat: Optional[Mapping[str, Any]], scale: float = 100.0,
        digits: int = 2, *, sig: bool = False, n: bool = True) -> str:
  """'88.41 ± 0.12 (n=4)' from a {mean, std, per_seed} dict, ± the sample
  std (`std_of`). `sig`: `digits` significant digits for the mean, two for
  the std (losses reach 1e-30); `n=False`: no count (a table states it once).
  One seed has no ±; a bare {mean} (a paper's number) is the number alone."""
  if not stat or stat.get("mean") is None:
    return "–"
  count = len(stat.get("per_seed", []))
  spec = f".{digits}{'g' if sig else 'f'}"
  s = f"{stat['mean'] * scale:{spec}}"
  if count > 1 or (not count and "std" in stat):  # No spread from 1 seed.
    s += f" ± {std_of(stat) * scale:{'.2g' if sig else spec}}"
  return s + f" (n={count})" * (n and count > 0)


def std_of(stat: Mapping[str, Any]) -> float:
  """The sample std of a {mean, std, per_seed} dict, from its per-seed values
  when they are all numbers."""
  values = stat.get("per_seed") or []
  if values and all(isinstance(v, (int, float)) for v in values):
    return sample_std(values)
  return float(stat.get("std") or 0.0)


def _cell(value: Any) -> str:
  # A '|' inside a cell (||w||, |γ|) would split it: escape it.
  return str(value).replace("|", "\\|")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  lines = ["| " + " | ".join(_cell(h) for h in header) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def table(items: Sequence[Any], columns: Sequence[Tuple[str, Any]],
          **kw) -> str:
  """A row per item; columns (header, cell): cell a function of the item, or
  a key whose stat `fmt` writes with `kw`."""
  return markdown_table([h for h, _ in columns], [
      [c(x) if callable(c) else fmt(x.get(c), **kw) for _, c in columns]
      for x in items])


def count(n: int, noun: str) -> str:
  """'1 seed', '3 seeds', '1 pair': a count and its noun, singular for 1."""
  return f"{n} {noun}{'s' * (n != 1)}"


def listing(values: Sequence[Any]) -> str:
  """'(batch, group)', '(0.0)': a setting's values in prose, where
  `tuple(...)` wrote a Python repr ("('batch', 'group')", "(0.0,)")."""
  return f"({', '.join(map(str, values))})"


def duration(seconds: float) -> str:
  """'42 s' under a minute, else '3.5 min' (progress lines, the article)."""
  return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def run_line(summary: Mapping[str, Any], extra: str = "") -> str:
  """'Wall time 12 s on 1 × cpu, jax 0.10.2.' from a summary's machine and
  wall time, then any `extra` figures (steps/s, stage times)."""
  machine = summary.get("machine", {})
  wall = summary.get("wall_time_s")
  where = (f"{machine.get('num_devices', '?')} × "
           f"{machine.get('device_kind', '?')}")
  if machine.get("num_processes", 1) > 1:
    where += f" in {machine['num_processes']} processes"
  text = (f"Wall time {wall:.0f} s" if wall is not None else "Wall time –")
  text += f" on {where}, jax {machine.get('jax', '?')}."
  return text + (f" {extra.strip()}" if extra else "")
