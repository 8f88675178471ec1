"""What every test module shares: one persistent XLA compilation cache for
the whole test session, and (under `-n N`) whole modules handed to the
xdist workers, the slowest first.

Most runs in these tests are tiny (`runlocal`), so compiling dominates them,
and many tests compile the very same programs: the same config run in
process by one test, through the CLI in a subprocess by another, in a
notebook's kernel, in a Ray worker, or again by a new `Trainer` in the same
process (a new jit, a new compile). JAX's persistent cache serves every one
of those after the first: the variables below reach this process, both
xdist workers and every subprocess they start (which copy os.environ). A
cached executable is the very code a fresh compile gives, so exact
comparisons between runs are unaffected; modules that want a cache of their
own (test_cli.py, test_imp.py) still set theirs.

The cache lives in a fresh folder per session (removed at its end), so a
test never sees an executable from an earlier checkout. It has no size
limit (JAX's default): a limit turns on JAX's eviction, which globs and
stats every entry of the folder (and reads its access time) on each write,
so with thousands of entries late in the suite every compile paid for a
scan: the same four modules took 130 s with a limit, 104 s without,
test_ntk's closed-form test 8.4 s vs 3.5 s, and the whole suite under -n 2
973 s (the last CI run with a limit) vs 654 s. Without the limit there is
no file lock either: a process that reads an entry another is still
writing gets a warning from JAX and compiles it itself (the same code).
Set JAX_COMPILATION_CACHE_DIR yourself to use (and keep) a folder of yours.

XLA's LLVM backend optimizes at level 0 in the tests (XLA_FLAGS, appended
here unless it already names one): most of a tiny run's time is its
compile, and level 0 spends less of it optimizing machine code (XLA's own
HLO passes run as before; the multi-device tests append their device
count to these flags). Exact comparisons are between runs of the same
session, compiled alike; references (numpy, closed forms) have tolerances.
Measured on 2 cores, the whole suite under -n 2: 925 s at the
default level, 743 and 738 s at level 0, every test passing; the compute-bound
tests run slower (the bfloat16 CNN test 42 -> 88 s), the compile-bound ones
faster (the batchnorm notebook 88 -> 50 s). XLA:CPU's legacy emitters
(`--xla_cpu_use_fusion_emitters=false`) compile the same programs in about
half the time of its newer MLIR fusion emitters (a bn_smoothness run 11.9
-> 7.6 s of compiling, an imp run 3.8 -> 1.6 s); the suite under -n 2
took 1124 s, then 871 s. Both options are run_helpers.SUITE_XLA_FLAGS;
users' runs keep XLA's defaults, and a test about what users get (the
bfloat16 accuracy, bit-for-bit init and scans) runs in a subprocess with
`run_helpers.users_xla_flags()`.

Command-line runs started with `subprocess.run([sys.executable, "-m",
"jaxunknowns.…", …])`, or with `forkserver.popen` by the tests that signal
or kill a run, are forks of a process that has already imported JAX, Flax,
optax, orbax, TFDS and matplotlib (forkserver.py says how, and what stays
as in a fresh interpreter): the imports were ~3.5 s of every such run. The
CLI tests of test_bad_input.py took 64 s in fresh interpreters, 12 s as
forks; the suite under -n 2 1486 s, then 1061 s. Runs started with
`subprocess.Popen` (a test that reads a run's pid) and `-c` scripts (the
ones that watch what a fresh interpreter imports) still get one.

Scheduling (`pytest -n 2 tests`, the README's command, when --dist is not
given): the slowest test decides the wall time when it starts last, and a
module's expensive module-scoped fixture (a shared run, a Ray cluster) is
set up once per worker that runs any of its tests. So each worker takes
whole modules (xdist's `loadfile`), the modules in SLOW_MODULES' order (the
slowest first, measured with --durations), then the others in their usual
order; a worker that finishes a module takes the next one. Within a module
the order is pytest's. An explicit --dist=... is left alone.
"""

import os
import shutil
import signal
import tempfile

import pytest

_OWNER = "JAXUNKNOWNS_TEST_XLA_CACHE_OWNER"

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(
      prefix="jaxunknowns_test_xla_")
  os.environ[_OWNER] = str(os.getpid())
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

# The suite's XLA options (run_helpers.SUITE_XLA_FLAGS), probed once per
# session: the xdist workers and subprocesses inherit them.
from run_helpers import with_suite_xla_flags  # pylint: disable=g-import-not-at-top,wrong-import-position

os.environ["XLA_FLAGS"] = with_suite_xla_flags(os.environ.get("XLA_FLAGS", ""))


# `python -m jaxunknowns.…` runs started by subprocess.run are forks (see
# above; JAXUNKNOWNS_TEST_FORKS=0 turns it off).
import forkserver  # pylint: disable=g-import-not-at-top,wrong-import-position
import subprocess  # pylint: disable=g-import-not-at-top,wrong-import-position

_run_as_given = subprocess.run


def _run_forked(args, *more, **kwargs):
  return _run_as_given(forkserver.routed(args, kwargs) or args, *more, **kwargs)


subprocess.run = _run_forked


# The Ctrl-C tests press Ctrl-C on a child process. A shell without job
# control starts a background job (`pytest ... &`, as a CI script may) with
# SIGINT ignored, and an ignored signal stays ignored across exec: the
# children never saw the Ctrl-C and ran on to exit 0. This process, and so
# every child it starts, handles SIGINT as an interactive one does.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
  signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_configure(config):
  del config
  # In case a plugin imported jax before this file set the variables.
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_compilation_cache_dir",
                    os.environ["JAX_COMPILATION_CACHE_DIR"])
  for name in ("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
               "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES",
               "JAX_COMPILATION_CACHE_MAX_SIZE"):
    if name in os.environ:
      value = os.environ[name]
      jax.config.update(name.lower(),
                        float(value) if "TIME" in name else int(value))


def pytest_unconfigure(config):
  del config
  forkserver.ZYGOTES.stop_all()
  if os.environ.get(_OWNER) == str(os.getpid()):
    shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


# Seconds of one module on 2 busy cores (--durations=0, summed per module,
# 2026-12-07, SUITE_XLA_FLAGS, no cache size limit, CLI runs forked; 1423
# tests in 876 s):
# only the order matters; a module not listed runs after these.
SLOW_MODULES = (
    ("test_scaleout.py", 216), ("test_colabs.py", 135),
    ("test_resume.py", 119), ("test_bad_input.py", 95),
    ("test_article.py", 73), ("test_imp.py", 67), ("test_sweep_ray.py", 62),
    ("test_trainer.py", 62), ("test_precision.py", 60),
    ("test_spectrum.py", 57), ("test_vmapped_sweep.py", 52),
    ("test_trainer_chunks.py", 49), ("test_overparam.py", 48),
    ("test_prune_init.py", 40), ("test_sweep.py", 36),
    ("test_smoothness.py", 33), ("test_bn_grid.py", 33),
    ("test_hessian.py", 31), ("test_decay_on.py", 31),
    ("test_multiprocess_faults.py", 30),
    ("test_workdirs.py", 28), ("test_landscape.py", 27), ("test_cli.py", 25),
    ("test_sharpness.py", 25), ("test_mock_tfds.py", 23), ("test_ntk.py", 20),
    ("test_bn_only.py", 20), ("test_max_margin.py", 19), ("test_data.py", 19),
    ("test_sam.py", 18), ("test_edge_of_stability.py", 18),
    ("test_memorization.py", 17), ("test_report_cli.py", 16),
    ("test_mode_connectivity.py", 16), ("test_forkserver.py", 15),
    ("test_models.py", 15), ("test_leases.py", 12),
    ("test_metrics_damage.py", 10), ("test_bn_stability.py", 10),
    ("test_masking.py", 7), ("test_interpolation.py", 7),
    ("test_launch.py", 5), ("test_unused_fields.py", 5),
    ("test_documented_numbers.py", 5),
)
_RANK = {name: i for i, (name, _) in enumerate(SLOW_MODULES)}


def _whole_modules(config) -> bool:
  """Under xdist, unless the command line chose a --dist of its own (asked
  on the controller, and on each worker, whose own options say dist=no)."""
  def chose_dist(args):
    return any(str(a).startswith(("--dist", "-d")) for a in args)
  workerinput = getattr(config, "workerinput", None)
  if workerinput is not None:
    return not chose_dist(workerinput["mainargv"][1:])
  return (config.pluginmanager.hasplugin("xdist")
          and bool(getattr(config.option, "numprocesses", None))
          and config.getoption("dist", "no") == "load"
          and not chose_dist(config.invocation_params.args))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
  if not _whole_modules(config):
    return
  # A stable sort: each module's tests stay together, in pytest's order.
  first_seen = {}
  for item in items:
    first_seen.setdefault(item.path.name, len(first_seen))
  items.sort(key=lambda item: (_RANK.get(item.path.name, len(_RANK)),
                               first_seen[item.path.name]))


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
  if not _whole_modules(config):
    return None
  from xdist.scheduler import LoadFileScheduling  # pylint: disable=g-import-not-at-top

  class SlowestModulesFirst(LoadFileScheduling):
    """loadfile, its modules in collection order (not by test count)."""

    def schedule(self):
      self.config.option.loadscopereorder = False
      super().schedule()

  return SlowestModulesFirst(config, log)
