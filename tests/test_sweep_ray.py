"""The sweep on a Ray cluster (`--executor=ray`): a local 2-CPU cluster started
by the test. The same sweep through Ray and through the local executor must
give the same sweep.json; a task whose worker is killed mid-run is retried
and resumes from its checkpoint, ending where an uninterrupted run ends.
"""

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

from jaxunknowns import sweep  # pylint: disable=g-import-not-at-top
from jaxunknowns.errors import UserError  # pylint: disable=g-import-not-at-top
from run_helpers import read_json  # pylint: disable=g-import-not-at-top
from test_sweep import TINY, TRAIN, write_config  # pylint: disable=g-import-not-at-top

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster():
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  # The workers share the session's XLA cache (tests/conftest.py): a Ray run
  # loads what the same run compiled here, as a resumed run would.
  cache = {k: v for k, v in os.environ.items()
           if k.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT_CACHE"))}
  ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
           runtime_env={"env_vars": {"JAX_PLATFORMS": "cpu",
                                     "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}",
                                     **cache}})
  yield
  ray.shutdown()


def _comparable(result):
  """sweep.json without what differs between two roots (paths)."""
  return [(r["name"], r["status"], r["overrides"], r["metrics"])
          for r in result["runs"]]


def test_ray_sweep_equals_the_local_sweep(cluster, tmp_path):
  spec = write_config(tmp_path, '{"s": grid(**{"optim.lr": [1e-3, 3e-3], '
                                '"seed": [0, 1]})}')
  # Separate programs, as Ray runs them (a vmapped sweep agrees only to
  # float tolerance: tests/test_vmapped_sweep.py).
  local = sweep.run_sweep(spec, str(tmp_path / "local"), None, TINY,
                          vmap=False)
  on_ray = sweep.run_sweep(spec, str(tmp_path / "ray"), None, TINY,
                           executor="ray")
  assert len(on_ray["runs"]) == 4
  assert all(r["status"] == "finished" for r in on_ray["runs"])
  assert _comparable(on_ray) == _comparable(local)
  assert read_json(tmp_path / "ray" / "sweep.json")["runs"][0]["metrics"] == (
      local["runs"][0]["metrics"])


def _kill_worker_after_checkpoint(workdir: Path, killed: list):
  """Kills the Ray worker running the task once its first checkpoint lands."""
  deadline = time.time() + 240
  while time.time() < deadline and not killed:
    ckpts = workdir / "checkpoints"
    if ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir()):
      for proc in psutil.process_iter(["cmdline"]):
        if "ray::run_one" in " ".join(proc.info["cmdline"] or []):
          proc.kill()
          killed.append(proc.pid)
      return
    time.sleep(0.05)


@pytest.mark.parametrize("overwrite", [False, True])
def test_killed_task_is_retried_and_resumes_from_its_checkpoint(
    cluster, tmp_path, overwrite):
  """With --overwrite too: each retry emptied the folder again (the task's
  own --overwrite), so it trained from step 0 and, killed at the same
  point, never finished. Now the folder is emptied once per sweep."""
  long = {**TINY, "train.steps": 400, "train.checkpoint_every": 100,
          "train.eval_every": 100}
  spec = write_config(tmp_path, '{"s": grid(**{"optim.lr": [1e-3]})}')
  reference = sweep.run_sweep(spec, str(tmp_path / "local"), None, long,
                              vmap=False)
  workdir = tmp_path / "ray" / "lr=0.001"
  if overwrite:  # what --overwrite removes: an earlier, shorter run (its
    # checkpoints gone, so the watcher waits for this sweep's first one)
    sweep.run_sweep(spec, str(tmp_path / "ray"), None, TINY, vmap=False)
    shutil.rmtree(workdir / "checkpoints")
  killed = []
  watcher = threading.Thread(target=_kill_worker_after_checkpoint,
                             args=(workdir, killed))
  watcher.start()
  result = sweep.run_sweep(spec, str(tmp_path / "ray"), None, long,
                           executor="ray", overwrite=overwrite,
                           executor_options={"max_retries": 2})
  watcher.join()
  assert killed, "the test never saw the task's worker to kill it"
  summary = read_json(workdir / "summary.json")
  assert summary["resumed_from_step"] and summary["resumed_from_step"] >= 100
  assert _comparable(result) == _comparable(reference)
  assert not [p for p in os.listdir(tmp_path / "ray") if p.startswith(".")]


def test_a_killed_vmapped_group_rerun_on_ray_resumes_each_run_apart(
    cluster, tmp_path, monkeypatch, capsys):
  """A local sweep's vmapped group killed after its first checkpoint, rerun
  with --executor=ray (a task per run): each task trained its run from step
  0, and the group's checkpoints were dropped unread. Now each run resumes
  from its slice of them, as with --novmap (tests/test_vmapped_sweep.py)."""
  from test_vmapped_sweep import kill_a_group_after_its_first_checkpoint  # pylint: disable=g-import-not-at-top
  spec = write_config(tmp_path, '{"s": [{"optim.lr": 0.03}, '
                      '{"optim.lr": 0.1}]}')
  settings = {**TINY, "optim.name": "momentum", "train.steps": 20}
  root = tmp_path / "root"
  kill_a_group_after_its_first_checkpoint(monkeypatch, spec, root, settings)
  capsys.readouterr()
  result = sweep.run_sweep(spec, str(root), "s", settings, executor="ray")
  names = [r["name"] for r in result["runs"]]
  assert (f"--executor=ray: {', '.join(names)} resume apart from the vmapped "
          "program's checkpoint at step 10") in capsys.readouterr().out
  assert not [p for p in os.listdir(root) if p.startswith(".vmapped-")]
  for r in result["runs"]:
    assert r["status"] == "finished"
    assert read_json(Path(r["workdir"]) / "summary.json")[
        "resumed_from_step"] == 10


def test_a_failing_run_keeps_the_others_and_is_listed(cluster, tmp_path):
  # SGD at lr = 1e9 diverges: a deterministic failure, not retried.
  spec = write_config(tmp_path, '{"s": grid(**{"optim.lr": [1e-3, 1e9]})}')
  with pytest.raises(UserError, match=r"1 of 2 runs .* failed \(lr=1e\+09: loss "
                     r"became nan"):
    sweep.run_sweep(spec, str(tmp_path / "ray"), None,
                    {**TINY, "optim.name": "sgd"}, executor="ray",
                    executor_options={"max_retries": 0})
  saved = read_json(tmp_path / "ray" / "sweep.json")
  status = {r["name"]: r["status"] for r in saved["runs"]}
  assert status == {"lr=0.001": "finished", "lr=1e+09": "failed"}
  failed = next(r for r in saved["runs"] if r["status"] == "failed")
  assert "loss became" in failed["error"]
  assert "Failed runs" in (tmp_path / "ray" / "sweep.md").read_text()


def test_unknown_executor_is_one_line():
  with pytest.raises(UserError, match="--executor='slurm'"):
    sweep.run_sweep(TRAIN, "/tmp/never_written", None, TINY,
                    executor="slurm")


def test_the_article_fans_its_stages_out_over_ray(cluster, tmp_path):
  """`article.executor=ray`: every stage a Ray task, the page as here."""
  # pylint: disable=g-import-not-at-top
  from jaxunknowns import config_loading, main
  from jaxunknowns.article import outline
  stages = ("max_margin", "imp")
  config = config_loading.load_config(
      f"{ROOT}/configs/article.py:runlocal",
      {"article.executor": "ray",
       "article.skip": ",".join(s for s in outline.STAGES if s not in stages)})
  summary = main.run(config, str(tmp_path / "article"))
  assert list(summary["stages"]) == list(stages)
  for stage in stages:
    assert summary["stages"][stage]["status"] == "finished"
    assert (tmp_path / "article" / "stages" / stage / "page.json").exists()
  text = (tmp_path / "article" / "ARTICLE.md").read_text()
  assert "stage `max_margin`" in text and "stage `imp`" in text


def test_an_address_no_cluster_answers_is_one_line_before_the_root(tmp_path):
  """ray.init retried an unreachable --ray_address for minutes, saying
  nothing, after the sweep's root was named."""
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:  # a port nothing listens on
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  root = tmp_path / "root"
  with pytest.raises(UserError, match=f"no Ray cluster answers at "
                     f"127.0.0.1:{port}"):
    sweep.run_sweep(TRAIN, str(root), "lr", TINY, executor="ray",
                    executor_options={"address": f"127.0.0.1:{port}"})
  assert not root.exists()


def test_resources_the_local_cluster_lacks_are_one_line(cluster, tmp_path):
  """--ray_resources=TPU=4 on a local cluster without TPUs: every task
  waited for them, forever and silently."""
  del cluster
  with pytest.raises(UserError, match=r"asks the local Ray cluster for "
                     r"TPU=4 \(it has 0\)"):
    sweep.run_sweep(TRAIN, str(tmp_path / "root"), "lr", TINY,
                    executor="ray", executor_options={"resources": {"TPU": 4}})
