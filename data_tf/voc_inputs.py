"""Inputs of a VOC segmentation run: the training split and VOC val.

One object answers what the trainer needs: ``train(epoch, input_context)``,
``val(input_context)``, the number of training images and a description of
the source for logs.
"""

import dataclasses

from data_tf import voc
from data_tf.splits import eval_size_note, train_size_note

__all__ = ["VOCInputs", "make_voc_inputs"]


@dataclasses.dataclass
class VOCInputs:
    train_split: voc.VOCSplit
    val_split: voc.VOCSplit
    batch_size: int
    crop_size: int
    seed: int
    train_size: int | None
    eval_size: int | None

    @property
    def num_train(self):
        return min(len(self.train_split), self.train_size or len(self.train_split))

    @property
    def num_val(self):
        return min(len(self.val_split), self.eval_size or len(self.val_split))

    @property
    def steps_per_epoch(self):
        return self.num_train // self.batch_size

    @property
    def source(self):
        return self.train_split.root

    def train(self, epoch, input_context=None):
        """Shuffled, augmented crops of `epoch` (a pure function of seed and epoch)."""
        return voc.make_voc_pipeline(
            self.train_split, batch_size=self.batch_size, training=True,
            crop_size=self.crop_size, seed=self.seed, epoch=epoch, drop_remainder=True,
            input_context=input_context, take=self.train_size)

    def val(self, input_context=None):
        """VOC val in list order, full images one at a time."""
        return voc.make_voc_pipeline(
            self.val_split, batch_size=1, training=False, crop_size=self.crop_size,
            input_context=input_context, take=self.eval_size)


def make_voc_inputs(data_dir, *, train_split="train", batch_size, crop_size, seed=0,
                    train_size=None, eval_size=None):
    """VOC 2012 found at or below `data_dir` (see ``data_tf.voc``).

    Raises:
      DatasetNotFoundError: no devkit, or a list/file of the splits missing.
      ValueError: a bad split name or list, or fewer training images than a batch.
    """
    if train_split not in ("train", "train_aug"):
        raise ValueError(f"train_split must be 'train' or 'train_aug', got {train_split!r}.")
    root = voc.find_voc_root(data_dir)
    inputs = VOCInputs(train_split=voc.load_voc_split(root, train_split),
                       val_split=voc.load_voc_split(root, "val"), batch_size=batch_size,
                       crop_size=crop_size, seed=seed, train_size=train_size,
                       eval_size=eval_size)
    for note in (train_size_note(train_size, len(inputs.train_split),
                                 f"VOC {train_split} in {root}"),
                 eval_size_note(eval_size, len(inputs.val_split), f"VOC val in {root}")):
        if note:
            print(note, flush=True)
    if inputs.num_train < batch_size:
        raise ValueError(f"{inputs.num_train} training images but batch_size={batch_size}; "
                         "lower the batch size or use more training images.")
    return inputs
