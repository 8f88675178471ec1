r"""Run a config on a Cloud TPU VM or pod slice, then fetch its workdir.

  python launch/tpu_vm.py --name=my-tpu --zone=us-central2-b \
      --accelerator_type=v4-8 --config=configs/train.py:mnist1d_cnn \
      --workdir=gs://BUCKET/cnn [--project=P] [--spot] [--delete] \
      [--config.seeds=8] [--dry_run]

Steps, in order (--steps picks some; delete only with --delete or
--steps=...,delete, since deleting also deletes what was not fetched):
  create   gcloud compute tpus tpu-vm create
  install  pack the project (git's tracked and new files), scp it to every
           worker, unpack and `uv pip install -e '.[tpu]'` on every worker
  run      python -m jaxunknowns.main (or .sweep with --sweep) on every worker
           at once: on a TPU VM jax.distributed finds the other workers itself
  fetch    scp the workdir back from worker 0 (only process 0 writes it);
           nothing for a gs:// workdir
Every worker must see the workdir: a gs:// path. A folder on the VM's own
disk needs --allow_local_workdir and a single-host slice.
  delete   gcloud compute tpus tpu-vm delete --quiet
See launch/README.md.
"""

import os
import shlex
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import launch_common as lc  # pylint: disable=g-import-not-at-top,wrong-import-position

STEPS = ("create", "install", "run", "fetch", "delete")

# Default runtime (--version) of each TPU generation, from Cloud TPU's docs.
RUNTIMES = (("v2-", "tpu-ubuntu2204-base"), ("v3-", "tpu-ubuntu2204-base"),
            ("v4-", "tpu-ubuntu2204-base"),
            ("v5litepod-", "v2-alpha-tpuv5-lite"),
            ("v5p-", "v2-alpha-tpuv5"), ("v6e-", "v2-alpha-tpuv6e"))


def parser() -> lc.Parser:
  p = lc.Parser(prog="launch/tpu_vm.py", description=__doc__.split("\n")[0])
  p.add_argument("--name", help="TPU VM name")
  p.add_argument("--zone", help="Zone, e.g. us-central2-b")
  p.add_argument("--accelerator_type", help="e.g. v4-8, v5litepod-16")
  p.add_argument("--version", help="TPU runtime (default from the type)")
  p.add_argument("--project", help="GCP project (default: gcloud's)")
  p.add_argument("--spot", action="store_true", help="Create a Spot VM")
  p.add_argument("--delete", action="store_true",
                 help="Delete the VM after fetching the workdir")
  p.add_argument("--steps", default="create,install,run,fetch",
                 help=f"Comma list of {','.join(STEPS)}")
  p.add_argument("--allow_local_workdir", action="store_true",
                 help="Let a single-host slice (v4-8, v5litepod-8, ...) run "
                 "into a folder on its own disk instead of gs://")
  p.add_argument("--tarball", help="Where the project is packed (default: "
                 "TMPDIR/jaxunknowns-NAME.tar.gz)")
  lc.add_run_arguments(p)
  return p


def runtime_for(accelerator_type: str) -> str:
  for prefix, runtime in RUNTIMES:
    if accelerator_type.startswith(prefix):
      return runtime
  raise lc.LaunchError(f"no default runtime for --accelerator_type="
                       f"{accelerator_type}; pass --version=RUNTIME")


def is_multi_host(accelerator_type: str) -> bool:
  """A slice larger than 8 cores or chips spans several hosts (v4-16,
  v5litepod-16); v4-8, v5litepod-8, v5p-8 and v6e-8 are one host."""
  size = accelerator_type.rsplit("-", 1)[-1]
  return not size.isdigit() or int(size) > 8


def check_shared_workdir(args):
  """Every worker runs the job and orbax writes checkpoints collectively,
  so a folder on each worker's own disk cannot hold a multi-host run."""
  if "run" not in args.steps or lc.on_object_store(args.workdir):
    return
  kind = args.accelerator_type
  if kind and is_multi_host(kind):
    # Not WORKDIR_NOT_SHARED's "or a shared filesystem": this launcher
    # cannot tell that a folder is mounted on every worker, so on a pod
    # slice it runs only into a bucket.
    raise lc.LaunchError(f"--workdir={args.workdir} on {kind} (several "
                         "hosts): every host writes the one workdir, and a "
                         "folder here is on each worker's own disk; pass "
                         "--workdir=gs://BUCKET/PATH")
  if not args.allow_local_workdir:
    raise lc.LaunchError(
        f"--workdir={args.workdir} is a folder on the TPU VM's own disk: pass "
        f"--workdir=gs://BUCKET/PATH, or --allow_local_workdir on a "
        f"single-host slice (v4-8, v5litepod-8, v5p-8, v6e-8)")
  if not kind:
    raise lc.LaunchError("--allow_local_workdir needs --accelerator_type, to "
                         "tell that the slice has a single host")


def parse_args(argv):
  args = lc.parse(parser(), argv)
  args.steps = lc.parse_steps(args.steps + (",delete" if args.delete else ""),
                              STEPS)
  needed = ["name", "zone"]  # Every step names the TPU VM.
  needed += ["accelerator_type"] if "create" in args.steps else []
  needed += ["config", "workdir"] if "run" in args.steps else []
  needed += ["workdir"] if "fetch" in args.steps else []
  lc.require(args, needed)
  if "create" in args.steps:
    args.version = args.version or runtime_for(args.accelerator_type)
  lc.check_workdir(args)
  check_shared_workdir(args)
  if args.sweep and "run" in args.steps and args.accelerator_type and (
      is_multi_host(args.accelerator_type)):
    # Every worker would run the whole sweep into the one root (the sweep
    # refuses there too, for a slice whose type was not given here).
    raise lc.LaunchError(
        f"--sweep on {args.accelerator_type} (several hosts): every worker "
        f"would run the whole sweep; run its runs one by one without "
        f"--sweep (each uses every host), use a single-host slice, or run "
        f"it as a Ray sweep (launch/README.md)")
  args.tarball = args.tarball or os.path.join(
      tempfile.gettempdir(), f"jaxunknowns-{args.name}.tar.gz")
  return args


def commands(args):
  """The steps' command lines, in order."""
  tpu = ["gcloud", "compute", "tpus", "tpu-vm"]
  where = [f"--zone={args.zone}"] + (
      [f"--project={args.project}"] if args.project else [])
  remote_tar = "jaxunknowns.tar.gz"  # In each worker's home.
  steps = []
  if "create" in args.steps:
    steps.append(lc.Step("create", tpu + [
        "create", args.name, *where, f"--accelerator-type={args.accelerator_type}",
        f"--version={args.version}"] + (["--spot"] if args.spot else [])))
  if "install" in args.steps:
    steps.append(lc.Step(
        "install", ["pack", lc.REPO, args.tarball],
        action=lambda: lc.pack(lc.REPO, args.tarball)))
    steps.append(lc.Step("install", tpu + [
        "scp", args.tarball, f"{args.name}:{remote_tar}", *where,
        "--worker=all"]))
    d = shlex.quote(args.remote_dir)
    unpack = f"mkdir -p {d} && tar -xzf {remote_tar} -C {d}"
    steps.append(lc.Step("install", tpu + [
        "ssh", args.name, *where, "--worker=all",
        f"--command={unpack} && {lc.install_command(args, 'tpu')}"]))
  if "run" in args.steps:
    steps.append(lc.Step("run", tpu + [
        "ssh", args.name, *where, "--worker=all",
        f"--command={lc.run_command(args)}"]))
  if "fetch" in args.steps:
    steps += lc.fetch_steps(args, tpu + [
        "scp", "--recurse", f"{args.name}:{lc.remote_workdir(args)}",
        args.fetch_to, *where, "--worker=0"])
  if "delete" in args.steps:
    steps.append(lc.Step("delete", tpu + [
        "delete", args.name, *where, "--quiet"]))
  return steps


def main(argv):
  args = parse_args(argv)
  where = f"--name={args.name} --zone={args.zone}" + (
      f" --project={args.project}" if args.project else "")

  def on_failure(step):
    if step.name == "create":
      return ""
    # Never delete after a failure: the workdir may hold hours of training.
    return (f"the TPU VM {args.name} is still up: rerun the remaining steps "
            f"with --steps=..., delete it with `python launch/tpu_vm.py "
            f"{where} --steps=delete`")
  lc.execute(commands(args), args.dry_run, on_failure)


if __name__ == "__main__":
  lc.main_wrapper(main)
