"""Tests of launch/tpu_vm.py and launch/gpu.py.

No cloud is reachable from CI, so the tests check the exact command lines
each step generates, the one-line errors, and the step runner itself with
fake `gcloud`, `ssh` and `rsync` executables that log their arguments.
"""

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "launch"))
import gpu  # pylint: disable=g-import-not-at-top,wrong-import-position
import launch_common  # pylint: disable=g-import-not-at-top,wrong-import-position
import tpu_vm  # pylint: disable=g-import-not-at-top,wrong-import-position

TPU_ARGS = ["--name=my-tpu", "--zone=us-central2-b", "--accelerator_type=v4-8",
            "--config=configs/train.py:mnist1d_cnn", "--workdir=workdirs/cnn",
            "--allow_local_workdir", "--tarball=/tmp/p.tar.gz"]
GPU_ARGS = ["--host=me@gpu-box", "--config=configs/train.py:mnist1d_cnn",
            "--workdir=workdirs/cnn"]
INSTALL = ("cd jaxunknowns && export PATH=\"$HOME/.local/bin:$PATH\" && "
           "(command -v uv >/dev/null || curl -LsSf "
           "https://astral.sh/uv/install.sh | sh) && uv venv --allow-existing "
           "--python 3.11 .venv && uv pip install --python .venv/bin/python -e "
           "'.[{extra}]'")
RUN = ("cd jaxunknowns && .venv/bin/python -m jaxunknowns.main "
       "--config=configs/train.py:mnist1d_cnn --workdir=workdirs/cnn")


def tpu_commands(*extra):
  return [step.argv for step in tpu_vm.commands(tpu_vm.parse_args(
      TPU_ARGS + list(extra)))]


def gpu_commands(*extra):
  return [step.argv for step in gpu.commands(gpu.parse_args(
      GPU_ARGS + list(extra)))]


# -----------------------------------------------------------------------------
# TPU VM command lines
# -----------------------------------------------------------------------------
def test_tpu_commands_for_every_step():
  where = ["--zone=us-central2-b", "--project=proj"]
  tpu = ["gcloud", "compute", "tpus", "tpu-vm"]
  got = tpu_commands("--project=proj", "--spot", "--delete",
                     "--config.seeds=8", "--config.optim.lr=0.01")
  assert got == [
      tpu + ["create", "my-tpu", *where, "--accelerator-type=v4-8",
             "--version=tpu-ubuntu2204-base", "--spot"],
      ["pack", str(ROOT), "/tmp/p.tar.gz"],
      tpu + ["scp", "/tmp/p.tar.gz", "my-tpu:jaxunknowns.tar.gz", *where,
             "--worker=all"],
      tpu + ["ssh", "my-tpu", *where, "--worker=all",
             "--command=mkdir -p jaxunknowns && tar -xzf jaxunknowns.tar.gz "
             "-C jaxunknowns && " + INSTALL.format(extra="tpu")],
      tpu + ["ssh", "my-tpu", *where, "--worker=all",
             "--command=" + RUN + " --config.seeds=8 --config.optim.lr=0.01"],
      ["mkdir", "-p", "workdirs"],
      tpu + ["scp", "--recurse", "my-tpu:jaxunknowns/workdirs/cnn", "workdirs",
             *where, "--worker=0"],
      tpu + ["delete", "my-tpu", *where, "--quiet"],
  ]


def test_tpu_defaults_steps_runtime_and_sweeps():
  got = tpu_commands()
  # No project flag, no spot, and no delete unless asked for.
  assert got[0] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "my-tpu",
                    "--zone=us-central2-b", "--accelerator-type=v4-8",
                    "--version=tpu-ubuntu2204-base"]
  assert all("delete" not in argv for argv in got)
  for accelerator, runtime in (("v5litepod-16", "v2-alpha-tpuv5-lite"),
                               ("v5p-8", "v2-alpha-tpuv5"),
                               ("v6e-8", "v2-alpha-tpuv6e")):
    assert f"--version={runtime}" in tpu_commands(
        f"--accelerator_type={accelerator}", "--workdir=gs://b/r")[0]
  assert "--version=custom" in tpu_commands("--version=custom")[0]
  # A sweep on an existing VM with another project folder.
  got = tpu_commands("--steps=run,fetch", "--sweep=lr", "--remote_dir=~/src")
  assert got[0][-1] == (
      "--command=cd src && .venv/bin/python -m jaxunknowns.sweep "
      "--config=configs/train.py:mnist1d_cnn --workdir=workdirs/cnn --sweep=lr")
  assert got[2][6] == "my-tpu:src/workdirs/cnn"
  # Steps run in their working order whatever order they were given in.
  assert [s.name for s in tpu_vm.commands(tpu_vm.parse_args(
      TPU_ARGS + ["--steps=fetch,create"]))] == ["create", "fetch", "fetch"]
  # An absolute workdir is fetched from where it is.
  got = tpu_commands("--steps=fetch", "--workdir=/data/runs/x/")
  assert got[1][6] == "my-tpu:/data/runs/x"


def test_tpu_dry_run_prints_exact_lines_and_runs_nothing(tmp_path):
  env = fake_path(tmp_path)
  proc = script("tpu_vm.py", *TPU_ARGS, "--dry_run", "--delete", env=env)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.splitlines() == [
      "gcloud compute tpus tpu-vm create my-tpu --zone=us-central2-b "
      "--accelerator-type=v4-8 --version=tpu-ubuntu2204-base",
      f"# pack {ROOT} /tmp/p.tar.gz",
      "gcloud compute tpus tpu-vm scp /tmp/p.tar.gz my-tpu:jaxunknowns.tar.gz "
      "--zone=us-central2-b --worker=all",
      "gcloud compute tpus tpu-vm ssh my-tpu --zone=us-central2-b --worker=all "
      "'--command=mkdir -p jaxunknowns && tar -xzf jaxunknowns.tar.gz -C "
      "jaxunknowns && cd jaxunknowns && export PATH=\"$HOME/.local/bin:$PATH\" "
      "&& (command -v uv >/dev/null || curl -LsSf "
      "https://astral.sh/uv/install.sh | sh) && uv venv --allow-existing "
      "--python 3.11 .venv && uv pip install --python .venv/bin/python -e "
      "'\"'\"'.[tpu]'\"'\"''",
      "gcloud compute tpus tpu-vm ssh my-tpu --zone=us-central2-b --worker=all "
      f"'--command={RUN}'",
      "mkdir -p workdirs",
      "gcloud compute tpus tpu-vm scp --recurse my-tpu:jaxunknowns/workdirs/cnn "
      "workdirs --zone=us-central2-b --worker=0",
      "gcloud compute tpus tpu-vm delete my-tpu --zone=us-central2-b --quiet",
  ]
  assert not (tmp_path / "calls.jsonl").exists()


def test_tpu_gs_workdir_on_a_pod_slice_fetches_nothing(tmp_path):
  """A gs:// workdir on a multi-host slice: every worker runs into it, and
  the fetch step only says where the results are."""
  env = fake_path(tmp_path)
  args = [a for a in TPU_ARGS if not a.startswith(("--workdir", "--accel",
                                                   "--allow"))]
  proc = script("tpu_vm.py", *args, "--accelerator_type=v5litepod-16",
                "--workdir=gs://my-bucket/runs/cnn", "--steps=run,fetch",
                "--dry_run", env=env)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.splitlines() == [
      "gcloud compute tpus tpu-vm ssh my-tpu --zone=us-central2-b --worker=all "
      "'--command=cd jaxunknowns && .venv/bin/python -m jaxunknowns.main "
      "--config=configs/train.py:mnist1d_cnn "
      "--workdir=gs://my-bucket/runs/cnn'",
      "# nothing to fetch: the results are in gs://my-bucket/runs/cnn"]
  assert not (tmp_path / "calls.jsonl").exists()


@pytest.mark.parametrize("accelerator,multi_host", [
    ("v4-8", False), ("v5litepod-8", False), ("v6e-8", False),
    ("v5p-8", False), ("v2-8", False), ("v5litepod-4", False),
    ("v4-16", True), ("v5litepod-16", True), ("v6e-256", True),
    ("v5p-32", True)])
def test_multi_host_slices(accelerator, multi_host):
  assert tpu_vm.is_multi_host(accelerator) == multi_host


def test_the_launcher_and_the_run_refuse_in_the_same_words():
  from jaxunknowns import errors  # pylint: disable=g-import-not-at-top
  assert launch_common.WORKDIR_NOT_SHARED == errors.WORKDIR_NOT_SHARED


# -----------------------------------------------------------------------------
# GPU command lines
# -----------------------------------------------------------------------------
def test_gpu_commands_for_every_step():
  assert gpu_commands("--config.seeds=4") == [
      ["rsync", "-az", "--delete", "--exclude=.git", "--filter=:- .gitignore",
       "--rsync-path=mkdir -p jaxunknowns && rsync", f"{ROOT}/",
       "me@gpu-box:jaxunknowns/"],
      ["ssh", "me@gpu-box", INSTALL.format(extra="cuda")],
      ["ssh", "me@gpu-box", RUN + " --config.seeds=4"],
      ["mkdir", "-p", "workdirs"],
      ["rsync", "-az", "me@gpu-box:jaxunknowns/workdirs/cnn", "workdirs/"],
  ]
  got = gpu_commands("--port=2222", "--identity=/k/id", "--steps=run,fetch",
                     "--fetch_to=/tmp/out", "--sweep=batch_lr")
  assert got == [
      ["ssh", "-p", "2222", "-i", "/k/id", "me@gpu-box",
       "cd jaxunknowns && .venv/bin/python -m jaxunknowns.sweep "
       "--config=configs/train.py:mnist1d_cnn --workdir=workdirs/cnn "
       "--sweep=batch_lr"],
      ["mkdir", "-p", "/tmp/out"],
      ["rsync", "-az", "-e", "ssh -p 2222 -i /k/id",
       "me@gpu-box:jaxunknowns/workdirs/cnn", "/tmp/out/"],
  ]


def test_gpu_dry_run_prints_exact_lines(tmp_path):
  proc = script("gpu.py", *GPU_ARGS, "--steps=run,fetch", "--dry_run",
                "--config.train.steps=100", env=fake_path(tmp_path))
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.splitlines() == [
      f"ssh me@gpu-box '{RUN} --config.train.steps=100'",
      "mkdir -p workdirs",
      "rsync -az me@gpu-box:jaxunknowns/workdirs/cnn workdirs/"]
  assert not (tmp_path / "calls.jsonl").exists()


def test_gpu_gs_workdir_fetches_nothing(tmp_path):
  env = fake_path(tmp_path)
  args = [a for a in GPU_ARGS if not a.startswith("--workdir")]
  proc = script("gpu.py", *args, "--workdir=gs://my-bucket/cnn",
                "--steps=run,fetch", "--dry_run", env=env)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.splitlines() == [
      "ssh me@gpu-box 'cd jaxunknowns && .venv/bin/python -m jaxunknowns.main "
      "--config=configs/train.py:mnist1d_cnn --workdir=gs://my-bucket/cnn'",
      "# nothing to fetch: the results are in gs://my-bucket/cnn"]


# -----------------------------------------------------------------------------
# Bad input: one line, exit 2, nothing run
# -----------------------------------------------------------------------------
@pytest.mark.parametrize("name,args,message", [
    ("tpu_vm.py", ["--config=c", "--workdir=w"],
     "error: missing --name, --zone, --accelerator_type (needed by "
     "--steps=create,install,run,fetch; see launch/README.md)"),
    ("tpu_vm.py", ["--name=t", "--zone=z", "--steps=run"],
     "error: missing --config, --workdir (needed by --steps=run; see "
     "launch/README.md)"),
    ("tpu_vm.py", ["--name=t", "--zone=z", "--accelerator_type=v9-8",
                   "--steps=create"],
     "error: no default runtime for --accelerator_type=v9-8; pass "
     "--version=RUNTIME"),
    ("tpu_vm.py", ["--name=t", "--zone=z", "--steps=make"],
     "error: unknown step 'make' in --steps; valid: "
     "create,install,run,fetch,delete"),
    ("gpu.py", ["--config=c", "--workdir=w"],
     "error: missing --host (needed by --steps=sync,install,run,fetch; see "
     "launch/README.md)"),
    ("gpu.py", ["--host=h", "--config=c", "--workdir=w", "--seeds=3"],
     "error: unrecognized arguments: --seeds=3 (config overrides are "
     "--config.FIELD=VALUE)"),
    ("gpu.py", ["--host=h", "--config=c", "--workdir=~/w"],
     "error: --workdir=~/w: give a path relative to --remote_dir "
     "(jaxunknowns) or an absolute one"),
    # The sync's rsync --delete would remove a run outside workdirs/ (the
    # folder .gitignore protects) the next time, i.e. on the documented
    # resume.
    ("gpu.py", ["--host=h", "--config=c", "--workdir=runs/cnn"],
     "error: --workdir=runs/cnn: a relative workdir must be under workdirs/ "
     "(e.g. --workdir=workdirs/cnn): the sync step deletes anything else in "
     "--remote_dir that the project does not hold; or give an absolute path "
     "outside --remote_dir"),
    ("gpu.py", ["--host=h", "--steps=fetch", "--workdir=workdirs/../w"],
     "error: --workdir=workdirs/../w: a relative workdir must be under "
     "workdirs/ (e.g. --workdir=workdirs/w): the sync step deletes anything "
     "else in --remote_dir that the project does not hold; or give an "
     "absolute path outside --remote_dir"),
    ("gpu.py", ["--host=h", "--steps=sync", "--port=ssh"],
     "error: argument --port: invalid int value: 'ssh'"),
    # A folder on each worker's own disk cannot hold a multi-host run, even
    # with --allow_local_workdir.
    ("tpu_vm.py", ["--name=t", "--zone=z", "--accelerator_type=v4-16",
                   "--config=c", "--workdir=w", "--allow_local_workdir"],
     "error: --workdir=w on v4-16 (several hosts): every host writes the one "
     "workdir, and a folder here is on each worker's own disk; pass "
     "--workdir=gs://BUCKET/PATH"),
    ("tpu_vm.py", ["--name=t", "--zone=z", "--accelerator_type=v5litepod-16",
                   "--config=c", "--workdir=/data/w", "--steps=create,run"],
     "error: --workdir=/data/w on v5litepod-16 (several hosts): every host "
     "writes the one workdir, and a folder here is on each worker's own disk; "
     "pass --workdir=gs://BUCKET/PATH"),
    ("tpu_vm.py", ["--name=t", "--zone=z", "--accelerator_type=v4-8",
                   "--config=c", "--workdir=w"],
     "error: --workdir=w is a folder on the TPU VM's own disk: pass "
     "--workdir=gs://BUCKET/PATH, or --allow_local_workdir on a single-host "
     "slice (v4-8, v5litepod-8, v5p-8, v6e-8)"),
    # Every worker of the slice ran the whole sweep into the one root.
    ("tpu_vm.py", ["--name=t", "--zone=z", "--accelerator_type=v4-16",
                   "--config=c", "--workdir=gs://b/w", "--sweep=lr"],
     "error: --sweep on v4-16 (several hosts): every worker would run the "
     "whole sweep; run its runs one by one without --sweep (each uses every "
     "host), use a single-host slice, or run it as a Ray sweep "
     "(launch/README.md)"),
    ("tpu_vm.py", ["--name=t", "--zone=z", "--steps=run,fetch", "--config=c",
                   "--workdir=w", "--allow_local_workdir"],
     "error: --allow_local_workdir needs --accelerator_type, to tell that "
     "the slice has a single host"),
])
def test_bad_arguments_are_one_line(tmp_path, name, args, message):
  proc = script(name, *args, env=fake_path(tmp_path))
  assert proc.returncode == 2
  assert proc.stderr.splitlines() == [message]
  assert proc.stdout == ""
  assert not (tmp_path / "calls.jsonl").exists()


# -----------------------------------------------------------------------------
# The step runner, against fake gcloud / ssh / rsync
# -----------------------------------------------------------------------------
FAKE = """#!{python}
import json, os, sys
with open(os.environ["FAKE_LOG"], "a") as f:
  f.write(json.dumps(sys.argv) + "\\n")
fail = os.environ.get("FAKE_FAIL", "")
sys.exit(3 if fail and any(fail in a for a in sys.argv) else 0)
"""


def fake_path(tmp_path, fail=""):
  """PATH whose gcloud, ssh and rsync only log their arguments."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir(exist_ok=True)
  for tool in ("gcloud", "ssh", "rsync"):
    path = bin_dir / tool
    path.write_text(FAKE.format(python=sys.executable))
    path.chmod(0o755)
  return dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
              FAKE_LOG=str(tmp_path / "calls.jsonl"), FAKE_FAIL=fail)


def calls(tmp_path):
  with open(tmp_path / "calls.jsonl") as f:
    return [json.loads(line) for line in f]


def script(name, *args, env):
  return subprocess.run([sys.executable, str(ROOT / "launch" / name), *args],
                        cwd=env.get("CWD", ROOT), env=env, capture_output=True,
                        text=True, timeout=120)


def test_tpu_steps_run_in_order_and_pack_the_project(tmp_path):
  env = dict(fake_path(tmp_path), CWD=str(tmp_path))
  tarball = tmp_path / "p.tar.gz"
  args = [a for a in TPU_ARGS if not a.startswith("--tarball")]
  proc = script("tpu_vm.py", *args, f"--tarball={tarball}", "--delete",
                env=env)
  assert proc.returncode == 0, proc.stderr
  expected = tpu_commands("--delete", f"--tarball={tarball}")
  # Every command but the in-process pack ran, exactly as planned.
  assert [c[1:] for c in calls(tmp_path)] == [
      argv[1:] for argv in expected if argv[0] == "gcloud"]
  assert (tmp_path / "workdirs").is_dir()  # mkdir -p ran, relative to cwd.
  assert proc.stdout.splitlines()[0] == "+ " + " ".join(expected[0])
  with tarfile.open(tarball) as tar:
    names = set(tar.getnames())
  assert {"setup.py", "jaxunknowns/sweep.py", "launch/tpu_vm.py",
          "configs/train.py"} <= names
  assert not any(n.startswith((".git/", "workdirs/")) or "__pycache__" in n
                 for n in names)


def test_with_ray_installs_the_ray_extra_too():
  """launch/README.md's Ray-on-TPU recipe starts `ray` from the project's
  venv, which `.[tpu]` alone did not install."""
  assert tpu_commands("--steps=install", "--with_ray")[-1][-1].endswith(
      INSTALL.format(extra="tpu,ray"))
  assert gpu_commands("--steps=install", "--with_ray") == [
      ["ssh", "me@gpu-box", INSTALL.format(extra="cuda,ray")]]


def test_a_local_virtualenv_is_neither_packed_nor_synced(tmp_path):
  """A venv made in the checkout (python -m venv .venv writes no
  .gitignore of its own) went to every TPU worker in the tarball, and the
  GPU sync pushed it over the remote .venv: both follow .gitignore."""
  repo = tmp_path / "repo"
  (repo / ".venv" / "bin").mkdir(parents=True)
  (repo / ".venv" / "bin" / "python").write_text("")
  (repo / "venv").mkdir()
  (repo / "venv" / "pyvenv.cfg").write_text("")
  (repo / "setup.py").write_text("")
  shutil.copy(ROOT / ".gitignore", repo / ".gitignore")
  subprocess.run(["git", "init", "-q", str(repo)], check=True)
  tarball = tmp_path / "p.tar.gz"
  launch_common.pack(str(repo), str(tarball))
  with tarfile.open(tarball) as tar:
    assert sorted(tar.getnames()) == [".gitignore", "setup.py"]


def test_a_failed_step_stops_and_never_deletes(tmp_path):
  env = fake_path(tmp_path, fail="jaxunknowns.main")
  proc = script("tpu_vm.py", *TPU_ARGS, "--steps=run,fetch", "--delete",
                env=env)
  assert proc.returncode == 2
  assert proc.stderr.splitlines() == [
      "error: step run failed (exit 3); the TPU VM my-tpu is still up: rerun "
      "the remaining steps with --steps=..., delete it with `python "
      "launch/tpu_vm.py --name=my-tpu --zone=us-central2-b --steps=delete`"]
  assert len(calls(tmp_path)) == 1  # No fetch, no delete.

  (tmp_path / "gpu").mkdir()
  env = fake_path(tmp_path / "gpu", fail="jaxunknowns.main")
  proc = script("gpu.py", *GPU_ARGS, env=env)
  assert proc.returncode == 2
  assert proc.stderr.splitlines() == [
      "error: step run failed (exit 3); a rerun resumes from the last "
      "checkpoint; fetch what there is with --steps=fetch"]
  assert [c[0].rsplit("/", 1)[-1] for c in calls(tmp_path / "gpu")] == [
      "rsync", "ssh", "ssh"]


def test_a_missing_tool_is_one_line(tmp_path):
  env = dict(os.environ, PATH=str(tmp_path))  # No gcloud anywhere.
  proc = subprocess.run(
      [sys.executable, str(ROOT / "launch" / "tpu_vm.py"), *TPU_ARGS,
       "--steps=delete"], env=env, capture_output=True, text=True, cwd=ROOT,
      timeout=60)
  assert proc.returncode == 2
  assert proc.stderr.splitlines() == [
      "error: step delete: gcloud not found (is it installed and on PATH?)"]


def test_home_relative_paths():
  assert launch_common.home_relative("~/src/x") == "src/x"
  assert launch_common.home_relative("~") == "."
  assert launch_common.home_relative("/abs") == "/abs"
