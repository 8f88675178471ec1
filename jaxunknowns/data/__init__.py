"""Datasets: loading (`load_dataset`), the registry (`DATASETS`), the
containers (`Dataset`, `Split`), randomization transforms (`transforms`) and
JAX augmentation (`augment`, imported on its own since it needs JAX).

    from jaxunknowns.data import load_dataset
    ds = load_dataset(config.data)
    ds.train.x  # float32 [N, *ds.input_shape]; ds.train.y int32 [N]

Names: mnist1d (default, offline), fashion_mnist and idx (MNIST-format IDX
folders, offline), digits, synthetic, soudry2d, and the TFDS catalogue
(mnist, cifar10, cifar100, svhn_cropped, or tfds:NAME for any other).
"""

from jaxunknowns.data import datasets as _datasets  # noqa: F401  (registers the datasets)
from jaxunknowns.data import transforms
from jaxunknowns.data.core import DATASETS, Dataset, Split
from jaxunknowns.data.pipeline import load_dataset

__all__ = ["DATASETS", "Dataset", "Split", "load_dataset", "transforms"]
