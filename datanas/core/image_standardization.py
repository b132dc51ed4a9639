"""ImageStandardization: the input normalisation of the pipelines, as a layer.

The training and search pipelines (``data_tf.image_pipelines``) feed a
network ``(images * scale - mean) / std``: ``scale`` is 1/255 for ``uint8``
images on 0..255 and 1 for float images on [0, 1], ``mean``/``std`` the
training split's per-channel statistics on the [0, 1] scale.  A model that
starts with this layer takes images as the user has them, so its saved
``.keras`` file predicts on raw images.
"""

import keras
import tensorflow as tf

__all__ = ["ImageStandardization"]


@keras.saving.register_keras_serializable(package="datanas")
class ImageStandardization(keras.layers.Layer):
    """``(cast(images) * scale - mean) / std`` per channel.

    Args:
      mean, std: per-channel statistics (sequences of the channel count, or
        scalars broadcast to every channel); ``std`` must be positive.
      scale: what a raw pixel is multiplied by first (1/255 for uint8 input).
    """

    def __init__(self, mean, std, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.mean = [float(m) for m in (mean if hasattr(mean, "__len__") else [mean])]
        self.std = [float(s) for s in (std if hasattr(std, "__len__") else [std])]
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean has {len(self.mean)} channels but std has {len(self.std)}.")
        if any(not s > 0 for s in self.std):
            raise ValueError(f"std must be positive in every channel, got {self.std}.")
        self.scale = float(scale)

    def call(self, images):
        x = tf.cast(images, self.compute_dtype) * self.scale
        mean = tf.constant(self.mean, self.compute_dtype)
        std = tf.constant(self.std, self.compute_dtype)
        return (x - mean) / std

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std, "scale": self.scale}
