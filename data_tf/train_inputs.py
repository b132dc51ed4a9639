"""Inputs of an evaluation run (train a fixed network): train, valid, test.

The validation split is carved from the (optionally subsetted) training
images with the same rule as the search, so a network can be selected on
it; the test split is only reported.
"""

import dataclasses

import numpy as np

from data_tf.image_pipelines import make_image_pipeline
from data_tf.search_inputs import default_augment
from data_tf.splits import take_subset, train_size_note, train_validation_split

__all__ = ["TrainInputs", "make_train_inputs"]


@dataclasses.dataclass
class TrainInputs:
    dataset: object
    train_images: np.ndarray
    train_labels: np.ndarray
    valid: tuple | None
    batch_size: int
    cutout: int
    seed: int

    @property
    def steps_per_epoch(self):
        return len(self.train_labels) // self.batch_size

    def train(self, epoch, input_context=None):
        """Augmented, shuffled training batches of `epoch` (deterministic)."""
        return make_image_pipeline(
            self.train_images, self.train_labels, batch_size=self.batch_size, training=True,
            mean=self.dataset.mean, std=self.dataset.std,
            augment=default_augment(self.dataset, cutout_size=self.cutout), seed=self.seed,
            epoch=epoch, drop_remainder=True, input_context=input_context)

    def _eval_pipeline(self, images, labels):
        return lambda context: make_image_pipeline(
            images, labels, batch_size=self.batch_size, training=False,
            mean=self.dataset.mean, std=self.dataset.std, input_context=context)

    def eval_sets(self, include_test=True):
        """{"valid": fn, "test": fn} of callables input_context -> dataset.

        ``include_test=False`` leaves the test split out (see `test_set`).
        """
        sets = {}
        if self.valid is not None:
            sets["valid"] = self._eval_pipeline(*self.valid)
        if include_test:
            sets.update(self.test_set())
        return sets

    def test_set(self):
        """{"test": fn}: the dataset's test split, for evaluating once at the end
        ({} when the dataset has none, e.g. own numpy arrays without x_test)."""
        if self.dataset.test_images is None:
            return {}
        return {"test": self._eval_pipeline(self.dataset.test_images, self.dataset.test_labels)}

    def sizes(self):
        return {"train": len(self.train_labels),
                "valid": 0 if self.valid is None else len(self.valid[1]),
                "test": 0 if self.dataset.test_labels is None else len(self.dataset.test_labels)}


def make_train_inputs(dataset, *, batch_size, train_size=None, validation_fraction=0.1,
                      cutout=0, seed=0, validation=None):
    """Splits an ImageDataset for training a fixed network; `validation`
    (images, labels) in the dataset's format replaces the carved split."""
    note = train_size_note(train_size, len(dataset.train_labels), dataset.name)
    if note:
        print(note, flush=True)
    images, labels = take_subset(dataset.train_images, dataset.train_labels, train_size, seed)
    valid = None if validation is None else tuple(validation)
    if validation is None and validation_fraction > 0:
        train_idx, valid_idx = train_validation_split(len(labels), validation_fraction, seed)
        valid = (images[valid_idx], labels[valid_idx])
        images, labels = images[train_idx], labels[train_idx]
    if len(labels) < batch_size:
        raise ValueError(f"{len(labels)} training images but batch_size={batch_size}; lower "
                         "the batch size or use more training images.")
    return TrainInputs(dataset=dataset, train_images=images, train_labels=labels, valid=valid,
                       batch_size=batch_size, cutout=cutout, seed=seed)
