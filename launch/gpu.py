r"""Run a config on one GPU machine over ssh, then fetch its workdir.

  python launch/gpu.py --host=me@gpu-box --config=configs/train.py:mnist1d_cnn \
      --workdir=workdirs/cnn [--port=22] [--identity=~/.ssh/id_ed25519] \
      [--config.seeds=8] [--dry_run]

Steps, in order (--steps picks some):
  sync     rsync the project (no .git, nothing .gitignore'd) to the host
  install  `uv pip install -e '.[cuda]'` into REMOTE_DIR/.venv
  run      python -m jaxunknowns.main (or .sweep with --sweep) on the host
  fetch    rsync the workdir back into --fetch_to
The host needs ssh, rsync, curl and an NVIDIA driver; uv brings Python and
the CUDA libraries. See launch/README.md.
"""

import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import launch_common as lc  # pylint: disable=g-import-not-at-top,wrong-import-position

STEPS = ("sync", "install", "run", "fetch")


def parser() -> lc.Parser:
  p = lc.Parser(prog="launch/gpu.py", description=__doc__.split("\n")[0])
  p.add_argument("--host", help="ssh destination, e.g. me@gpu-box")
  p.add_argument("--port", type=int, help="ssh port")
  p.add_argument("--identity", help="ssh private key file")
  p.add_argument("--steps", default=",".join(STEPS),
                 help=f"Comma list of {','.join(STEPS)}")
  lc.add_run_arguments(p)
  return p


def parse_args(argv):
  args = lc.parse(parser(), argv)
  args.steps = lc.parse_steps(args.steps, STEPS)
  needed = ["host"]
  needed += ["config", "workdir"] if "run" in args.steps else []
  needed += ["workdir"] if "fetch" in args.steps else []
  lc.require(args, needed)
  lc.check_workdir(args)
  w = args.workdir
  if w and not lc.on_object_store(w) and not os.path.isabs(w) and (
      not lc.in_workdirs(w)):
    # The sync's `rsync --delete` removes from --remote_dir whatever the
    # project does not hold, except what .gitignore names (/workdirs/):
    # a run in --remote_dir/runs/x would be deleted, checkpoints and all,
    # by the next sync (the documented way to resume).
    raise lc.LaunchError(
        f"--workdir={w}: a relative workdir must be under workdirs/ (e.g. "
        f"--workdir=workdirs/{os.path.basename(os.path.normpath(w))}): the "
        "sync step deletes anything else in --remote_dir that the project "
        "does not hold; or give an absolute path outside --remote_dir")
  return args


def ssh_options(args):
  return ((["-p", str(args.port)] if args.port else []) +
          (["-i", args.identity] if args.identity else []))


def commands(args):
  """The steps' command lines, in order."""
  ssh = ["ssh", *ssh_options(args), args.host]
  rsync = ["rsync", "-az"]
  if ssh_options(args):
    rsync += ["-e", shlex.join(["ssh", *ssh_options(args)])]
  d = shlex.quote(args.remote_dir)
  steps = []
  if "sync" in args.steps:
    # Excluded files are never deleted on the host: its .venv and workdirs stay.
    steps.append(lc.Step("sync", rsync + [
        "--delete", "--exclude=.git", "--filter=:- .gitignore",
        f"--rsync-path=mkdir -p {d} && rsync", f"{lc.REPO}/",
        f"{args.host}:{args.remote_dir}/"]))
  if "install" in args.steps:
    steps.append(lc.Step("install", ssh + [lc.install_command(args, "cuda")]))
  if "run" in args.steps:
    steps.append(lc.Step("run", ssh + [lc.run_command(args)]))
  if "fetch" in args.steps:
    steps += lc.fetch_steps(args, rsync + [
        f"{args.host}:{lc.remote_workdir(args)}", f"{args.fetch_to}/"])
  return steps


def main(argv):
  args = parse_args(argv)

  def on_failure(step):
    if step.name == "run":
      return ("a rerun resumes from the last checkpoint; fetch what there is "
              "with --steps=fetch")
    return ""
  lc.execute(commands(args), args.dry_run, on_failure)


if __name__ == "__main__":
  lc.main_wrapper(main)
