"""Output heads: what turns a body's last feature map into a task's outputs.

A search space builds a *body* (stem and cells); the task decides what sits
on top (``Task.build_head``).  ``ClassificationHead`` is the image
classifier of DARTS-style networks: a global average over every axis
between the batch and the channels, then one Dense layer of logits.
"""

import keras

__all__ = ["ClassificationHead"]


@keras.saving.register_keras_serializable(package="datanas")
class ClassificationHead(keras.layers.Layer):
    """Global average pooling over the spatial axes, then logits.

    Args:
      num_classes: logits per example (>= 2).

    Input: ``[batch, ..., channels]`` (any number of spatial axes, none
    included).  Output: ``[batch, num_classes]``.
    """

    def __init__(self, num_classes, **kwargs):
        super().__init__(**kwargs)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}.")
        self.num_classes = num_classes
        self.classifier = keras.layers.Dense(num_classes, name="classifier")

    def build(self, input_shape):
        if not self.classifier.built:
            self.classifier.build((input_shape[0], input_shape[-1]))
        self.built = True

    def call(self, features):
        if len(features.shape) > 2:
            features = keras.ops.mean(features, axis=tuple(range(1, len(features.shape) - 1)))
        return self.classifier(features)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}
