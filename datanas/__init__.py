"""datanas: DATA (Differentiable ArchiTecture Approximation) with the
Ensemble Gumbel-Softmax estimator, for Keras 3 on TensorFlow 2.

The package uses TensorFlow ops and tf.distribute directly, so Keras must
run on its TensorFlow backend.

Layers, lowest first (docs/architecture.md; tests/test_layering.py keeps
it): ``core`` (Keras helpers) -> ``estimators`` -> ``spaces`` / ``tasks``
-> ``engine`` (run lifecycle) -> ``search`` / ``training`` -> ``analysis``
-> ``layers`` (public re-exports).  Importing ``datanas`` registers
every serializable class, so ``keras.models.load_model`` works after it.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        "datanas needs the TensorFlow Keras backend, but Keras is using "
        f"{keras.backend.backend()!r}. Set KERAS_BACKEND=tensorflow before importing keras.")

__version__ = "0.2.0"

# Registers every Keras-serializable class (layers, supernet, networks) and
# every search space.
from datanas import layers as _layers  # noqa: E402,F401  pylint: disable=wrong-import-position
from datanas import spaces as _spaces  # noqa: E402,F401  pylint: disable=wrong-import-position
from datanas.spaces.darts_cnn import backbone as _backbone  # noqa: E402,F401
from datanas.spaces.darts_cnn import networks as _networks  # noqa: E402,F401
from datanas.spaces.darts_cnn import segmentation as _segmentation  # noqa: E402,F401
from datanas.spaces.darts_cnn import supernet as _supernet  # noqa: E402,F401
