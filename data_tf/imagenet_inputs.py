"""Inputs of an ImageNet evaluation run: class folders or a prepared TFDS.

One object answers what a trainer needs whatever the on-disk source:
``train(epoch, input_context)``, ``valid(input_context)``, the number of
classes and of training images, and a description of the source for logs.
"""

import dataclasses
import os

from data_tf import imagenet
from data_tf.splits import eval_size_note, train_size_note

__all__ = ["ImageNetInputs", "make_imagenet_inputs"]


@dataclasses.dataclass
class ImageNetInputs:
    train_split: object          # ImageFolderSplit or tf.data.Dataset of TFDS examples
    valid_split: object
    make_pipeline: object        # imagenet.make_imagenet_pipeline or make_tfds_imagenet_pipeline
    num_classes: int
    num_train: int
    source: str
    batch_size: int
    image_size: int
    seed: int
    train_size: int | None
    eval_size: int | None

    @property
    def steps_per_epoch(self):
        return self.num_train // self.batch_size

    def train(self, epoch, input_context=None):
        """Shuffled, augmented batches of `epoch` (a pure function of seed and epoch)."""
        return self.make_pipeline(
            self.train_split, batch_size=self.batch_size, training=True,
            image_size=self.image_size, seed=self.seed, epoch=epoch, drop_remainder=True,
            take=self.train_size, input_context=input_context)

    def valid(self, input_context=None):
        """Validation batches in file order, centre-cropped."""
        return self.make_pipeline(
            self.valid_split, batch_size=self.batch_size, training=False,
            image_size=self.image_size, take=self.eval_size, input_context=input_context)


def make_imagenet_inputs(data_dir, *, batch_size, image_size=224, seed=0, train_size=None,
                         eval_size=None):
    """ImageNet from `data_dir`: class folders if `data_dir/train` exists, else TFDS.

    Raises:
      DatasetNotFoundError: neither layout is present (the message says how
        to provide one).
      ValueError: fewer training images than one batch.
    """
    if os.path.isdir(os.path.join(data_dir, "train")):
        train_split, valid_split = imagenet.load_imagenet_folders(data_dir)
        make, num_classes = imagenet.make_imagenet_pipeline, train_split.num_classes
        available, source = len(train_split), f"class folders {data_dir}"
    else:
        train_split, valid_split, num_classes = imagenet.load_tfds_imagenet(data_dir)
        make, source = imagenet.make_tfds_imagenet_pipeline, f"tfds imagenet2012 in {data_dir}"
        available = int(train_split.cardinality())
    num_train = min(available, train_size or available)
    for note in (train_size_note(train_size, available, source),
                 eval_size_note(eval_size, _count(valid_split), source)):
        if note:
            print(note, flush=True)
    if num_train < batch_size:
        raise ValueError(f"{num_train} training images but batch_size={batch_size}; lower the "
                         "batch size or use more training images.")
    return ImageNetInputs(train_split=train_split, valid_split=valid_split, make_pipeline=make,
                          num_classes=num_classes, num_train=num_train, source=source,
                          batch_size=batch_size, image_size=image_size, seed=seed,
                          train_size=train_size, eval_size=eval_size)


def _count(split):
    """Images of a split: an ImageFolderSplit's files, a TFDS split's
    cardinality (None when unknown)."""
    if hasattr(split, "cardinality"):
        count = int(split.cardinality())
        return count if count >= 0 else None
    return len(split)
