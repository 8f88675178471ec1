"""An offline gs:// for tests: gs://BUCKET/PATH is the folder ROOT/BUCKET/PATH.

`install(root)` swaps the backend that etils.epath uses for gs:// paths (the
one every workdir file, and orbax's metadata, goes through) and the
TensorStore kvstore orbax builds for gs:// array data. Everything above them
runs unchanged and sees "gs://..." paths: `paths.is_local` is False, orbax
takes its GCS code path. Like a real bucket, the fake cannot append to an
object. A folder on the local disk, it is shared by every process of the
machine that installs it with the same root.

  python tests/fake_gcs.py ROOT -m jaxunknowns.main --workdir=gs://b/run ...
runs a module with the fake installed (for subprocesses).
"""

import os
import runpy
import sys
import types

from etils.epath import backend, gpath

PREFIX = "gs://"


class LocalBucket(backend.Backend):
  """epath's os backend on ROOT/BUCKET/PATH for every gs://BUCKET/PATH."""

  def __init__(self, root: str):
    self.root = root
    self.os = backend.os_backend
    self.calls = 0  # the tests check that gs:// paths came through here

  def local(self, path) -> str:
    path = os.fspath(path)
    assert path.startswith(PREFIX), path
    self.calls += 1
    return os.path.join(self.root, path[len(PREFIX):])

  def remote(self, path: str) -> str:
    return PREFIX + os.path.relpath(path, self.root)

  def open(self, path, mode):
    if "a" in mode:
      raise NotImplementedError("an object store cannot append to an object")
    local = self.local(path)
    if "w" in mode:  # an object needs no parent folder
      os.makedirs(os.path.dirname(local), exist_ok=True)
    return self.os.open(local, mode)

  def exists(self, path):
    return self.os.exists(self.local(path))

  def isdir(self, path):
    return self.os.isdir(self.local(path))

  def listdir(self, path):
    return self.os.listdir(self.local(path))

  def glob(self, path):
    return [self.remote(p) for p in self.os.glob(self.local(path))]

  def walk(self, top, *, top_down=True, on_error=None):
    for root, dirs, files in self.os.walk(self.local(top), top_down=top_down,
                                          on_error=on_error):
      yield self.remote(root), dirs, files

  def makedirs(self, path, *, exist_ok=False, mode=None):
    self.os.makedirs(self.local(path), exist_ok=exist_ok)

  def mkdir(self, path, *, exist_ok=False, mode=None):
    self.os.mkdir(self.local(path), exist_ok=exist_ok)

  def rmtree(self, path):
    self.os.rmtree(self.local(path))

  def remove(self, path):
    self.os.remove(self.local(path))

  def rename(self, path, dst):
    self.os.rename(self.local(path), self.local(dst))

  def replace(self, path, dst):
    self.os.replace(self.local(path), self.local(dst))

  def copy(self, path, dst, overwrite):
    self.os.copy(self.local(path), self.local(dst), overwrite=overwrite)

  def stat(self, path):
    return self.os.stat(self.local(path))


def install(root: str, patch=setattr) -> LocalBucket:
  """Serves gs:// from `root` in this process; returns the backend.
  `patch`: how to set an attribute (pytest's monkeypatch.setattr undoes it)."""
  from orbax.checkpoint._src.path import gcs_utils  # pylint: disable=g-import-not-at-top
  bucket = LocalBucket(os.path.abspath(root))
  backends = gpath._PREFIX_TO_BACKEND  # pylint: disable=protected-access
  patch(gpath, "_PREFIX_TO_BACKEND", {**backends, "gs": bucket})
  patch(gpath, "_is_tf_installed", lambda: False)  # else tf.io.gfile is used
  # orbax writes arrays through TensorStore's own gcs driver: a file one.
  patch(gcs_utils, "get_kvstore_for_gcs",
        lambda path: {"driver": "file", "path": bucket.local(path)})
  # A flat bucket (GCS's default), asked without google-cloud-storage.
  patch(gcs_utils, "get_bucket", lambda name: types.SimpleNamespace(
      name=name, hierarchical_namespace_enabled=False))
  return bucket


if __name__ == "__main__":
  install(sys.argv[1])
  if sys.argv[2] != "-m":
    raise SystemExit("usage: fake_gcs.py ROOT -m MODULE [ARGS...]")
  sys.argv = [sys.argv[3]] + sys.argv[4:]
  runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
