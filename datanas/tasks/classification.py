"""Image classification: cross-entropy, top-1 (and top-k) accuracy."""

import keras
import tensorflow as tf

from datanas.core.heads import ClassificationHead
from datanas.tasks.base import Task

__all__ = ["ClassificationTask"]


def _at_least_float32(logits):
    """bfloat16/float16 logits as float32; float32 and float64 unchanged."""
    return logits if logits.dtype.size >= 4 else tf.cast(logits, tf.float32)


class ClassificationTask(Task):
    """Integer labels, logits over `num_classes`.

    Args:
      num_classes: number of classes.
      label_smoothing: training loss smoothing (ImageNet recipe: 0.1).
      top_k: evaluation also reports top-k accuracy (k capped at num_classes).
    """

    train_metrics = ("loss", "accuracy")

    def __init__(self, num_classes, label_smoothing=0.0, top_k=5):
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}.")
        self.num_classes, self.label_smoothing = num_classes, label_smoothing
        # Reported as "top<k>" even when there are fewer classes (then it is 1.0).
        self.top_k, self._k = top_k, min(top_k, num_classes)

    @property
    def eval_names(self):
        return ("loss", "accuracy", f"top{self.top_k}")

    @property
    def log_metrics(self):
        return ("loss", "accuracy", f"top{self.top_k}", "error")

    # Losses and sums are at least float32 whatever the model's compute dtype:
    # a bfloat16 cross-entropy keeps ~3 significant digits, and in_top_k has no
    # bfloat16 kernel; float64 models (gradient checks) keep float64.

    def build_head(self, name="head"):
        """Global average pooling, then `num_classes` logits."""
        return ClassificationHead(self.num_classes, name=name)

    def per_example_loss(self, targets, outputs):
        labels = tf.cast(targets, tf.int32)
        outputs = _at_least_float32(outputs)
        if not self.label_smoothing:
            return keras.losses.sparse_categorical_crossentropy(labels, outputs, from_logits=True)
        return keras.losses.categorical_crossentropy(
            tf.one_hot(labels, self.num_classes), outputs, from_logits=True,
            label_smoothing=self.label_smoothing)

    @staticmethod
    def _correct(targets, outputs):
        return tf.reduce_sum(tf.cast(tf.equal(tf.argmax(outputs, axis=-1, output_type=tf.int32),
                                              tf.cast(targets, tf.int32)), tf.float32))

    def train_sums(self, targets, outputs, per_example_loss):
        return {"loss": tf.cast(tf.reduce_sum(per_example_loss), tf.float32),
                "accuracy": self._correct(targets, outputs)}

    def eval_sums(self, targets, outputs):
        labels = tf.cast(targets, tf.int32)
        outputs = _at_least_float32(outputs)
        top_k = tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, outputs, self._k), tf.float32))
        return {"loss": tf.cast(tf.reduce_sum(self.per_example_loss(targets, outputs)), tf.float32),
                "accuracy": self._correct(targets, outputs), f"top{self.top_k}": top_k}

    def eval_metrics(self, sums, count):
        metrics = {name: value / count for name, value in sums.items()}
        metrics["error"] = 1.0 - metrics["accuracy"]
        return metrics
