"""Inputs of an architecture search: train / architecture / validation splits.

The test split is never used by a search.  A validation split is carved
from the training images (``validation_fraction``) and is what search-time
accuracies and architecture selection are measured on; the test split is
reported once, by the evaluation trainers.  In ``alternate`` mode the
remaining training images are halved: one half updates the network weights,
the other the architecture logits (first-order DARTS protocol).
"""

import dataclasses

import numpy as np

from data_tf.image_pipelines import AugmentConfig, make_image_pipeline
from data_tf.splits import split_in_halves, take_subset, train_size_note, train_validation_split

__all__ = ["SearchInputs", "make_search_inputs", "default_augment"]


def default_augment(dataset, cutout_size=0):
    """Standard pad-and-crop (H/8 pixels) plus flip where the dataset allows it."""
    height = dataset.image_shape[0]
    return AugmentConfig(random_crop_padding=max(1, height // 8),
                         horizontal_flip=dataset.allow_horizontal_flip,
                         cutout_size=cutout_size)


@dataclasses.dataclass
class SearchInputs:
    """Arrays of each split and pipelines built from them on demand."""
    train_images: np.ndarray
    train_labels: np.ndarray
    arch_images: np.ndarray | None
    arch_labels: np.ndarray | None
    valid_images: np.ndarray
    valid_labels: np.ndarray
    batch_size: int
    mean: tuple
    std: tuple
    augment: AugmentConfig
    seed: int

    @property
    def steps_per_epoch(self):
        """Weight-update steps per epoch (incomplete last batch dropped)."""
        return self.distributed_steps_per_epoch(1, 1)

    def distributed_steps_per_epoch(self, num_input_pipelines, num_replicas):
        """Steps every input pipeline can feed when the epoch is sharded.

        Each pipeline gets every `num_input_pipelines`-th example and yields
        per-replica batches; a step takes num_replicas/num_input_pipelines
        batches from each pipeline.
        """
        per_replica_batch = self.batch_size // num_replicas
        if per_replica_batch * num_replicas != self.batch_size:
            raise ValueError(f"batch_size {self.batch_size} is not divisible by the "
                             f"{num_replicas} replicas.")
        sizes = [len(self.train_labels) // num_input_pipelines]
        if self.arch_labels is not None:
            sizes.append(len(self.arch_labels) // num_input_pipelines)
        per_pipeline = max(num_replicas // num_input_pipelines, 1)
        return min(size // per_replica_batch for size in sizes) // per_pipeline

    def train(self, epoch, input_context=None):
        return make_image_pipeline(
            self.train_images, self.train_labels, batch_size=self.batch_size, training=True,
            mean=self.mean, std=self.std, augment=self.augment, seed=self.seed, epoch=epoch,
            drop_remainder=True, input_context=input_context)

    def arch(self, epoch, input_context=None):
        if self.arch_images is None:
            return None
        return make_image_pipeline(
            self.arch_images, self.arch_labels, batch_size=self.batch_size, training=True,
            mean=self.mean, std=self.std, augment=self.augment, seed=self.seed + 1,
            epoch=epoch, drop_remainder=True, input_context=input_context)

    def validation(self, input_context=None):
        return make_image_pipeline(
            self.valid_images, self.valid_labels, batch_size=self.batch_size, training=False,
            mean=self.mean, std=self.std, input_context=input_context)

    def sizes(self):
        return {"train": int(len(self.train_labels)),
                "arch": 0 if self.arch_labels is None else int(len(self.arch_labels)),
                "validation": int(len(self.valid_labels))}


def make_search_inputs(dataset, *, batch_size, train_size=None, validation_fraction=0.1,
                       separate_arch_split=False, seed=0, augment=None, validation=None):
    """Builds the search splits from an ImageDataset's training images.

    Args:
      dataset: a data_tf ImageDataset.
      batch_size: global batch size.
      train_size: use a class-balanced subset of this many training images
        (before the validation split); None = all.
      validation_fraction: fraction of the (subset of) training images held
        out for validation.
      separate_arch_split: halve the rest into weight / architecture splits.
      seed: seeds subset, splits, shuffling and augmentation.
      augment: AugmentConfig; default `default_augment(dataset)`.
      validation: optional (images, labels) in the dataset's format: the
        validation split as given (`validation_fraction` is then unused and
        every selected training image trains).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    note = train_size_note(train_size, len(dataset.train_labels), dataset.name)
    if note:
        print(note, flush=True)
    images, labels = take_subset(dataset.train_images, dataset.train_labels, train_size, seed)
    if validation is None:
        train_idx, valid_idx = train_validation_split(len(labels), validation_fraction, seed)
        valid_images, valid_labels = images[valid_idx], labels[valid_idx]
    else:
        train_idx = np.arange(len(labels))
        valid_images, valid_labels = validation
    arch_images = arch_labels = None
    if separate_arch_split:
        half_w, half_a = split_in_halves(len(train_idx), seed)
        arch_idx, train_idx = train_idx[half_a], train_idx[half_w]
        arch_images, arch_labels = images[arch_idx], labels[arch_idx]
    if len(train_idx) < batch_size:
        raise ValueError(
            f"only {len(train_idx)} training images remain for weight updates but batch_size is "
            f"{batch_size}; raise --train_size or lower --batch_size.")
    return SearchInputs(
        train_images=images[train_idx], train_labels=labels[train_idx],
        arch_images=arch_images, arch_labels=arch_labels,
        valid_images=valid_images, valid_labels=valid_labels,
        batch_size=batch_size, mean=dataset.mean, std=dataset.std,
        augment=augment or default_augment(dataset), seed=seed)
