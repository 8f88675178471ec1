"""The small shared readers and checks that experiments' `validate`
functions use: config_loading.name_list, validation.check_int,
validation.is_number and validation.check_corruption_grid."""

import numpy as np
import pytest

from jaxunknowns import config_loading, validation
from jaxunknowns.errors import UserError


@pytest.mark.parametrize("value,want", [
    (("a", "b"), ["a", "b"]),
    (("a,b",), ["a", "b"]),          # --config.x=a,b on the command line
    ((" a , b ", "c"), ["a", "b", "c"]),
    ("a,b", ["a", "b"]),             # a bare string is one entry
    ("bezier", ["bezier"]),
    ((), []),
    (("",), []),
])
def test_name_list(value, want):
  assert config_loading.name_list(value) == want


def test_check_int_message_and_kinds():
  validation.check_int(3, "x.n", 1)
  validation.check_int(np.int64(0), "x.n", 0)
  with pytest.raises(UserError, match=r"^x\.n=0 is out of range: must be an "
                     r"integer >= 1$"):
    validation.check_int(0, "x.n", 1)
  with pytest.raises(UserError, match=r"must be an integer >= 0 \(0 = all\)$"):
    validation.check_int(-1, "x.n", 0, "0 = all")
  for bad in (True, 2.0, "2"):
    with pytest.raises(UserError, match="x.n"):
      validation.check_int(bad, "x.n", 1)


def test_is_number():
  assert all(validation.is_number(v) for v in (1, 0.5, np.float32(2), np.int8(1)))
  assert not any(validation.is_number(v) for v in (True, "1", None, 1j))


def test_check_corruption_grid():
  validation.check_corruption_grid("g", (0.0, 0.5, 1))
  validation.check_corruption_grid("g", ())
  with pytest.raises(UserError, match=r"g=\(0\.0, 1\.5\) .* probabilities p "
                     r"in \[0, 1\]"):
    validation.check_corruption_grid("g", [0.0, 1.5])
  with pytest.raises(UserError, match="strictly increasing"):
    validation.check_corruption_grid("g", (0.5, 0.5))
  with pytest.raises(UserError, match=r"\[0, 1\]"):
    validation.check_corruption_grid("g", (False, 0.5))
