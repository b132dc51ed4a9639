"""datanas: DATA (Differentiable ArchiTecture Approximation) with the
Ensemble Gumbel-Softmax estimator, for Keras 3 on TensorFlow 2.

The package uses TensorFlow ops and tf.distribute directly, so Keras must
run on its TensorFlow backend.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        "datanas needs the TensorFlow Keras backend, but Keras is using "
        f"{keras.backend.backend()!r}. Set KERAS_BACKEND=tensorflow before importing keras.")

__version__ = "0.1.0"
