"""datanas: DATA (Differentiable ArchiTecture Approximation) with the
Ensemble Gumbel-Softmax estimator, for Keras 3 on TensorFlow 2.

The package uses TensorFlow ops and tf.distribute directly, so Keras must
run on its TensorFlow backend.

Layers, lowest first (docs/architecture.md; tests/test_layering.py keeps
it): ``core`` (Keras helpers) -> ``estimators`` -> ``spaces`` / ``tasks``
-> ``engine`` (run lifecycle) -> ``searching`` / ``training`` -> ``analysis``
-> ``layers`` (public re-exports) -> ``api`` (``search``, ``train``: the Python
API and the jobs the image trainers share with it; the one package that
reads data through ``data_tf``).  Importing ``datanas`` registers
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

# The public API (docs/api.md).
from datanas.api import SearchResult, load_genotype, save_genotype, search, train  # noqa: E402
from datanas.core.image_standardization import ImageStandardization  # noqa: E402
from datanas.estimators import EnsembleGumbelSoftmax  # noqa: E402
from datanas.spaces.darts_cnn.cells import GenotypeCell, SearchCell  # noqa: E402
from datanas.spaces.darts_cnn.genotype import Genotype  # noqa: E402
from datanas.spaces.darts_cnn.mixed_edge import MixedEdge  # noqa: E402
from datanas.spaces.darts_cnn.networks import NetworkCIFAR, NetworkImageNet  # noqa: E402
from datanas.spaces.darts_cnn.supernet import SearchNetwork  # noqa: E402
from datanas.spaces.darts_rnn.cells import RecurrentCell  # noqa: E402

__all__ = ["search", "train", "SearchResult", "load_genotype", "save_genotype", "Genotype",
           "EnsembleGumbelSoftmax", "MixedEdge", "SearchCell", "GenotypeCell", "RecurrentCell",
           "SearchNetwork", "NetworkCIFAR", "NetworkImageNet", "ImageStandardization"]
