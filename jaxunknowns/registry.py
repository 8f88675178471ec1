"""Name -> constructor registries for experiments, models, datasets, optimizers.

One small class so that every unknown name, whatever its kind, gets the same
one-line error listing the valid names.
"""

from typing import Callable, Dict, Generic, TypeVar

from jaxunknowns.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
  """Maps names to objects; `get` fails with the list of valid names."""

  def __init__(self, kind: str, field: str):
    self.kind = kind      # e.g. "model"
    self.field = field    # the config field that names it, e.g. "model.name"
    self._entries: Dict[str, T] = {}

  def register(self, name: str) -> Callable[[T], T]:
    def decorator(obj: T) -> T:
      if name in self._entries:
        raise ValueError(f"{self.kind} {name!r} registered twice")
      self._entries[name] = obj
      return obj
    return decorator

  def get(self, name: str) -> T:
    if name not in self._entries:
      raise UserError(
          f"unknown {self.kind} {name!r} in {self.field}; "
          f"valid names: {', '.join(sorted(self._entries))}")
    return self._entries[name]

  def names(self):
    return sorted(self._entries)

  def __contains__(self, name: str) -> bool:
    return name in self._entries
