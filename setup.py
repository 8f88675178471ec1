"""jaxunknowns: reproduce and push on what deep learning still does not understand."""

from setuptools import find_packages, setup

# Minimum versions are the ones the test suite was run with (Python 3.11).
INSTALL_REQUIRES = [
    "jax>=0.10.2",
    "flax>=0.12.8",
    "optax>=0.2.8",
    "orbax-checkpoint>=0.12.8",
    "tensorflow-datasets>=4.9.10",
    "array-record>=0.8.6",
    "ml-collections>=1.1.0",
    "absl-py>=2.5.1",
    "numpy>=2.0",
    "matplotlib>=3.10",
    "tensorboardX>=2.6.5",   # TensorBoard event files without TensorFlow.
    "mnist1d>=0.0.2",        # The MNIST-1D generator (offline default data).
    "scikit-learn>=1.5",     # sklearn digits.
    "scipy>=1.10",           # The exact hard-margin SVM (max_margin).
]

EXTRAS = {
    # nbclient/nbformat/ipykernel execute the Colab notebooks in tests.
    "test": ["pytest>=8", "pytest-xdist>=3.6",
             "nbclient>=0.10", "nbformat>=5.10", "ipykernel>=6.29"],
    # TFDS catalogue image datasets (MNIST, CIFAR-10, ...) decode with TF.
    "tfds": ["tensorflow>=2.18", "importlib_resources"],
    # Sweeps on a Ray cluster: python -m jaxunknowns.sweep ... --executor=ray
    "ray": ["ray>=2.40"],
    # --workdir=gs://BUCKET/PATH: gcsfs is etils.epath's gs:// backend, and
    # orbax asks google-cloud-storage about the bucket.
    "cuda": ["jax[cuda12]>=0.10.2", "gcsfs>=2024.2", "google-cloud-storage"],
    "tpu": ["jax[tpu]>=0.10.2", "gcsfs>=2024.2", "google-cloud-storage"],
}

setup(
    name="jaxunknowns",
    version="0.1.0",
    description="Reproduce BatchNorm, over-parameterization, implicit "
                "regularization and lottery-ticket phenomena in JAX/Flax.",
    packages=find_packages(include=["jaxunknowns", "jaxunknowns.*"]),
    python_requires=">=3.11",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
)
