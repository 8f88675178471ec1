"""Reading (and writing) MNIST-format IDX files, gzip'd or raw.

The IDX format (LeCun's MNIST page): two zero bytes, a type code, the number
of dimensions, one big-endian uint32 per dimension, then the data, big-endian.
Fashion-MNIST, MNIST, KMNIST and EMNIST all ship in it. Reading needs only
numpy, so the offline image benchmarks never need TensorFlow.
"""

import gzip
import hashlib
import os
import struct
import zlib
from typing import Dict, Optional, Tuple

import numpy as np

from jaxunknowns.errors import UserError

# IDX type code -> big-endian numpy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dt.newbyteorder("="): code for code, dt in _IDX_DTYPES.items()}

# The four files of an MNIST-format folder, by role. Each role accepts the
# official dash names and the dotted names some mirrors use, gzip'd or not.
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"


def _candidates(stem: str):
  dotted = stem.replace("-idx", ".idx")
  for base in (stem, dotted):
    yield base + ".gz"
    yield base


def _read(path: str, size: int = -1) -> bytes:
  """The first `size` bytes (all: -1) of an IDX file, gunzipped where its
  magic bytes say gzip; a damaged gzip stream (cut short, or bytes changed)
  is the user's to replace, said in one line, not zlib's traceback."""
  with open(path, "rb") as f:
    gzipped = f.read(2) == b"\x1f\x8b"
  try:
    with (gzip.open if gzipped else open)(path, "rb") as f:
      return f.read(size)
  except (EOFError, zlib.error, gzip.BadGzipFile) as e:
    raise UserError(f"{path} is truncated or corrupt ({e}); replace the "
                    "file (download it again)") from e


def read_idx(path: str) -> np.ndarray:
  """Reads one IDX file (gzip detected from its magic bytes) into a numpy array."""
  data = _read(path)
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
    raise UserError(f"{path} is not an IDX file (bad magic number)")
  dtype, ndim = _IDX_DTYPES[data[2]], data[3]
  shape = _shape(data, path)
  count = int(np.prod(shape, dtype=np.int64))
  offset = 4 + 4 * ndim
  if len(data) - offset != count * dtype.itemsize:
    raise UserError(
        f"{path} is truncated or corrupt: header says shape {shape} "
        f"({count * dtype.itemsize} bytes), file holds {len(data) - offset}")
  array = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
  return array.reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str, array: np.ndarray) -> None:
  """Writes `array` as an IDX file; gzip'd when `path` ends in .gz."""
  array = np.asarray(array)
  native = array.dtype.newbyteorder("=")
  if native not in _IDX_CODES:
    raise ValueError(f"IDX cannot store dtype {array.dtype}")
  code = _IDX_CODES[native]
  header = bytes([0, 0, code, array.ndim]) + struct.pack(
      ">" + "I" * array.ndim, *array.shape)
  payload = header + array.astype(_IDX_DTYPES[code]).tobytes()
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(payload)


def find_idx_files(folder: str, dataset: str = "MNIST-format") -> Dict[str, str]:
  """Paths of the four IDX files in `folder`; UserError naming what is missing."""
  found, missing = {}, []
  for role, stem in IDX_FILES.items():
    path = next((os.path.join(folder, name) for name in _candidates(stem)
                 if os.path.isfile(os.path.join(folder, name))), None)
    if path is None:
      missing.append(stem + "[.gz]")
    else:
      found[role] = path
  if missing:
    raise UserError(
        f"{dataset} IDX files not found in {folder} (missing "
        f"{', '.join(missing)}): install Debian's {FASHION_MNIST_PACKAGE} "
        f"package (apt-get install -y {FASHION_MNIST_PACKAGE}) or set "
        f"--config.data.source_dir to a folder of MNIST-format IDX files")
  return found


def files_digest(paths) -> str:
  """A content hash of the files, so a cached build follows the folder's contents."""
  h = hashlib.blake2b(digest_size=16)
  for path in sorted(paths):
    with open(path, "rb") as f:
      for block in iter(lambda: f.read(1 << 22), b""):
        h.update(block)
  return h.hexdigest()


def _as_nhwc(images: np.ndarray, path: str) -> np.ndarray:
  if images.ndim == 3:
    return images[..., None]
  if images.ndim == 4:
    return images
  raise UserError(f"{path}: expected images of rank 3 (N, H, W) or 4, got shape {images.shape}")


def read_idx_header(path: str) -> Tuple[int, ...]:
  """The shape recorded in an IDX file's header, without reading its data."""
  head = _read(path, 4 + 4 * 255)  # the longest header: 255 dimensions
  if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES:
    raise UserError(f"{path} is not an IDX file (bad magic number)")
  return _shape(head, path)


def _shape(data: bytes, path: str) -> Tuple[int, ...]:
  ndim = data[3]
  if len(data) < 4 + 4 * ndim:
    raise UserError(f"{path} is truncated or corrupt: its header is cut "
                    "short; replace the file (download it again)")
  return struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])


def read_idx_folder(folder: str, dataset: str = "MNIST-format",
                    files: Optional[Dict[str, str]] = None):
  """Reads the four IDX files of a folder.

  Returns {"train": (images, labels), "test": (images, labels)} with images
  as stored (uint8 for MNIST-like data) in NHWC and labels as int32.
  """
  files = files or find_idx_files(folder, dataset)
  out = {}
  for split in ("train", "test"):
    images = _as_nhwc(read_idx(files[f"{split}_images"]), files[f"{split}_images"])
    labels = read_idx(files[f"{split}_labels"]).astype(np.int32).reshape(-1)
    if len(images) != len(labels):
      raise UserError(
          f"{folder}: {split} has {len(images)} images but {len(labels)} labels")
    out[split] = (images, labels)
  return out
