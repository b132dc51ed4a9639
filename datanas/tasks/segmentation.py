"""Semantic segmentation: per-pixel cross-entropy with an ignore label, mean IoU.

Targets are integer label maps ``[batch, H, W]``; outputs are logits
``[batch, H, W, num_classes]`` of the same size.  Pixels labelled
``ignore_label`` (255 in PASCAL VOC: object borders and padding) take no
part in the loss or the metrics.

* Loss of one image (``per_example_loss``): the mean cross-entropy over its
  valid pixels (0 for an image without any).  The engine sums these and
  divides by the global batch, so every image weighs the same whatever
  its number of valid pixels (DeepLab's reference code averages over all
  valid pixels of the batch instead; the two agree when images have equal
  valid areas, as random crops mostly do).
* Evaluation accumulates a ``num_classes x num_classes`` confusion matrix
  (rows: true class, columns: predicted class) over the whole split, ignore
  label excluded; then IoU_c = TP / (TP + FP + FN) per class, mean IoU over
  the classes that occur in the ground truth or the predictions (PASCAL
  VOC's definition; a class absent from both has no IoU and is reported as
  None), and pixel accuracy = trace / total.
* Training reports the loss and the per-image pixel accuracy (the mean
  over images of each image's fraction of correct valid pixels).
"""

import numpy as np
import tensorflow as tf

from datanas.tasks.base import Task

__all__ = ["SegmentationTask", "confusion_metrics"]


def confusion_metrics(confusion, class_names=None):
    """mIoU, pixel accuracy and per-class IoU of a confusion matrix.

    Args:
      confusion: ``[C, C]`` counts, rows = true class, columns = predicted.
      class_names: names of the C classes (default "0", "1", ...).
    Returns:
      {"miou": float, "pixel_accuracy": float, "per_class_iou": {name:
      float or None (class in neither truth nor prediction)}}.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"confusion must be a square matrix, got shape {confusion.shape}.")
    names = ([str(i) for i in range(confusion.shape[0])] if class_names is None
             else list(class_names))
    if len(names) != confusion.shape[0]:
        raise ValueError(f"{len(names)} class names for a {confusion.shape[0]}-class "
                         "confusion matrix.")
    true_positive = np.diag(confusion)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - true_positive
    present = union > 0
    iou = np.where(present, true_positive / np.maximum(union, 1.0), np.nan)
    total = confusion.sum()
    return {
        "miou": float(np.mean(iou[present])) if present.any() else 0.0,
        "pixel_accuracy": float(true_positive.sum() / total) if total else 0.0,
        "per_class_iou": {name: (float(value) if ok else None)
                          for name, value, ok in zip(names, iou, present)},
    }


class SegmentationTask(Task):
    """Per-pixel classification into `num_classes`, `ignore_label` excluded.

    Args:
      num_classes: number of classes (21 for PASCAL VOC: background + 20).
      ignore_label: label of pixels that are not scored (255 in VOC); must
        lie outside [0, num_classes).
      class_names: names used for the per-class IoU entries.
    """

    train_metrics = ("loss", "pixel_accuracy")
    headline = "miou"
    headline_higher_is_better = True

    def __init__(self, num_classes=21, ignore_label=255, class_names=None):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}.")
        if isinstance(ignore_label, bool) or not isinstance(ignore_label, int) or \
                0 <= ignore_label < num_classes:
            raise ValueError(f"ignore_label must be an integer outside [0, {num_classes}) "
                             f"(a class index cannot be ignored), got {ignore_label!r}.")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for num_classes={num_classes}.")
        self.num_classes, self.ignore_label = num_classes, ignore_label
        self.class_names = (tuple(str(n) for n in class_names) if class_names is not None
                            else tuple(str(i) for i in range(num_classes)))

    @property
    def eval_names(self):
        return ("loss", "confusion")

    @property
    def eval_shapes(self):
        return {"loss": (), "confusion": (self.num_classes, self.num_classes)}

    @property
    def log_metrics(self):
        return ("loss", "miou", "pixel_accuracy")

    def _valid(self, targets):
        labels = tf.cast(targets, tf.int32)
        valid = tf.not_equal(labels, self.ignore_label)
        return tf.where(valid, labels, tf.zeros_like(labels)), valid

    def _per_pixel(self, targets, outputs):
        labels, valid = self._valid(targets)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=labels, logits=tf.cast(outputs, tf.float32))
        return losses, labels, tf.cast(valid, tf.float32)

    @staticmethod
    def _image_mean(values, valid):
        return tf.math.divide_no_nan(tf.reduce_sum(values * valid, axis=[1, 2]),
                                     tf.reduce_sum(valid, axis=[1, 2]))

    def per_example_loss(self, targets, outputs):
        losses, _, valid = self._per_pixel(targets, outputs)
        return self._image_mean(losses, valid)

    def _predictions(self, outputs):
        return tf.argmax(outputs, axis=-1, output_type=tf.int32)

    def train_sums(self, targets, outputs, per_example_loss):
        labels, valid = self._valid(targets)
        correct = tf.cast(tf.equal(self._predictions(outputs), labels), tf.float32)
        return {"loss": tf.cast(tf.reduce_sum(per_example_loss), tf.float32),
                "pixel_accuracy": tf.reduce_sum(
                    self._image_mean(correct, tf.cast(valid, tf.float32)))}

    def eval_sums(self, targets, outputs):
        labels, valid = self._valid(targets)
        confusion = tf.math.confusion_matrix(
            tf.boolean_mask(labels, valid), tf.boolean_mask(self._predictions(outputs), valid),
            num_classes=self.num_classes, dtype=tf.float32)
        return {"loss": tf.reduce_sum(self.per_example_loss(targets, outputs)),
                "confusion": confusion}

    def eval_metrics(self, sums, count):
        metrics = {"loss": float(sums["loss"]) / count}
        metrics.update(confusion_metrics(sums["confusion"], self.class_names))
        return metrics
