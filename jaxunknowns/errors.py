"""The one exception type for mistakes a user can fix.

Anything raised as `UserError` is printed by `main` as a single line (no
traceback) and exits non-zero. Raise it *before* anything is written to the
workdir, so that bad input never leaves a half-written run behind.
"""


class UserError(Exception):
  """A bad config value, unknown name or missing file, with what to do."""
