"""PASCAL VOC 2012 segmentation, read exactly as it ships, and its tf.data pipelines.

Layout (``VOCtrainval_11-May-2012.tar`` extracted; nothing is downloaded)::

    VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    VOCdevkit/VOC2012/SegmentationClass/<id>.png       palette PNGs
    VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,trainval}.txt

and, for ``train_aug`` (the 10,582 training images of DeepLab: VOC train
plus SBD's extra masks, VOC val excluded), the commonly distributed
``SegmentationClassAug/<id>.png`` masks with the id list
``ImageSets/Segmentation/train_aug.txt`` (one id, or "<image> <mask>" paths,
per line).

Masks: the *stored* pixel values are the class indices: 0 background,
1..20 the classes of ``VOC_CLASSES``, 255 = ignore (object borders,
"difficult" regions).  A palette PNG maps those indices to the VOC colours
for viewing; ``tf.io.decode_png`` applies the palette and returns the RGB
colours, so masks are read with Pillow, which returns a palette ("P")
image's indices untouched (grayscale "L" masks, as SBD's are often
distributed, are read as they are).  Any other value, or an RGB mask, is
refused with a message naming the file.

``--data_dir`` may be ``VOCdevkit/VOC2012`` itself or any parent of it up
to ``MAX_SEARCH_DEPTH`` levels above (the shallowest match wins; several at
the same depth are refused by name).  This covers a TensorFlow Datasets
data_dir in which ``voc/2012`` was prepared, whose extracted archive
(``downloads/extracted/.../VOCdevkit/VOC2012``) has the masks: the TFDS
``voc`` dataset itself holds detection boxes only, no segmentation masks.

Pipelines (images normalised with the ImageNet statistics, as the ImageNet
pipelines do; labels int32, 255 = ignore):

* training: random scale in [0.5, 2.0] (continuous; bilinear image,
  nearest-neighbour label), padding at the bottom/right to at least
  ``crop_size`` (image with 0 = the mean colour after normalisation, label
  with 255), a random ``crop_size`` square, random horizontal flip;
  every draw is stateless from ``(seed, epoch, file index)``.
* evaluation: full images at their own size, one per batch (per replica),
  nothing padded or resized, so metrics are over exactly the stored pixels.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import re

import numpy as np
import tensorflow as tf

from data_tf.image_datasets import DatasetNotFoundError
from data_tf.image_pipelines import _check_nonneg_int, _epoch_key
from data_tf.imagenet import IMAGENET_MEAN, IMAGENET_STD, imagenet_file_order

__all__ = ["VOC_CLASSES", "NUM_CLASSES", "IGNORE_LABEL", "SPLITS", "SCALE_RANGE",
           "MAX_SEARCH_DEPTH", "VOCSplit", "VOCFileError", "voc_colormap", "find_voc_root",
           "load_voc_split", "read_mask", "read_voc_example", "voc_file_error",
           "make_voc_pipeline"]

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
               "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
               "pottedplant", "sheep", "sofa", "train", "tvmonitor")
NUM_CLASSES = len(VOC_CLASSES)
IGNORE_LABEL = 255
SPLITS = ("train", "val", "trainval", "train_aug")
SCALE_RANGE = (0.5, 2.0)
MAX_SEARCH_DEPTH = 5

_LIST_DIR = os.path.join("ImageSets", "Segmentation")
_IMAGE_DIR = "JPEGImages"
_MASK_DIRS = {"train": "SegmentationClass", "val": "SegmentationClass",
              "trainval": "SegmentationClass", "train_aug": "SegmentationClassAug"}
# Never descended into while looking for VOC2012 (large, and never hold it).
_SKIP_DIRS = {"JPEGImages", "Annotations", "SegmentationClass", "SegmentationObject",
              "SegmentationClassAug", "ImageSets"}
_LAYOUT_HINT = ("expected VOCdevkit/VOC2012 with JPEGImages/*.jpg, SegmentationClass/*.png and "
                "ImageSets/Segmentation/{train,val,trainval}.txt (the extracted "
                "VOCtrainval_11-May-2012.tar); nothing is downloaded")


class VOCFileError(ValueError):
    """A VOC image or mask that cannot be used; the message names the file."""


def voc_colormap():
    """The VOC palette: ``uint8 [256, 3]``, index i -> its colour (bit-interleaved)."""
    colormap = np.zeros((256, 3), np.uint8)
    for index in range(256):
        value, red, green, blue = index, 0, 0, 0
        for shift in range(7, -1, -1):
            red |= ((value >> 0) & 1) << shift
            green |= ((value >> 1) & 1) << shift
            blue |= ((value >> 2) & 1) << shift
            value >>= 3
        colormap[index] = (red, green, blue)
    return colormap


# --------------------------------------------------------------------------
# Finding the devkit
# --------------------------------------------------------------------------


def _is_voc_root(path):
    return (os.path.isdir(os.path.join(path, _IMAGE_DIR))
            and os.path.isdir(os.path.join(path, _LIST_DIR)))


def _subdirectories(path):
    try:
        with os.scandir(path) as entries:
            return sorted(e.path for e in entries
                          if not e.name.startswith(".") and e.name not in _SKIP_DIRS
                          and e.is_dir())
    except OSError:
        return []


def find_voc_root(data_dir):
    """The ``VOC2012`` directory at or below `data_dir` (shallowest first).

    Raises:
      DatasetNotFoundError: `data_dir` does not exist, or holds no VOC2012
        directory within MAX_SEARCH_DEPTH levels (the message says what was
        expected, and what a prepared TFDS voc/2012 there lacks).
      ValueError: several VOC2012 directories at the same depth (named).
    """
    if not data_dir:
        raise DatasetNotFoundError(f"no VOC data directory given; {_LAYOUT_HINT}.")
    root = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    if not os.path.isdir(root):
        raise DatasetNotFoundError(f"VOC data directory {root} does not exist; {_LAYOUT_HINT}.")
    if _is_voc_root(root):
        return root
    level = [root]
    for _ in range(MAX_SEARCH_DEPTH):
        level = [sub for path in level for sub in _subdirectories(path)]
        found = [path for path in level
                 if os.path.basename(path) == "VOC2012" and _is_voc_root(path)]
        if len(found) == 1:
            return found[0]
        if found:
            raise ValueError(f"{root} holds several VOC2012 directories ("
                             + ", ".join(found) + "); pass one of them as --data_dir.")
        if not level:
            break
    detail = ""
    if os.path.isdir(os.path.join(root, "voc", "2012")):
        detail = (" TFDS's voc/2012 is prepared there, but that dataset holds detection boxes "
                  "only (no segmentation masks) and its extracted archive "
                  "(downloads/extracted/.../VOCdevkit/VOC2012) was not kept; pass an extracted "
                  "VOCtrainval_11-May-2012.tar instead.")
    raise DatasetNotFoundError(
        f"no VOCdevkit/VOC2012 directory in {root} or up to {MAX_SEARCH_DEPTH} levels below it; "
        f"{_LAYOUT_HINT}.{detail}")


# --------------------------------------------------------------------------
# Split lists
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class VOCSplit:
    """One segmentation split: image and mask paths in list order."""

    name: str
    ids: tuple
    image_files: tuple
    mask_files: tuple
    root: str

    def __len__(self):
        return len(self.ids)


def _read_ids(list_path):
    ids = []
    with open(list_path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) > 2:
                raise VOCFileError(f"{list_path} line {number}: expected an image id (or "
                                   f"'<image> <mask>' paths), got {line.strip()!r}.")
            ids.append(os.path.splitext(os.path.basename(fields[0]))[0])
    if not ids:
        raise VOCFileError(f"{list_path} lists no images.")
    return ids


def load_voc_split(root, split):
    """The ids, JPEG and mask paths of `split` of the VOC2012 directory `root`.

    Raises:
      ValueError: unknown split; an empty or malformed list; train_aug
        listing VOC val images.
      DatasetNotFoundError: the list, the mask directory or a listed file
        is missing (the message names it, and how many more are missing).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}.")
    list_path = os.path.join(root, _LIST_DIR, f"{split}.txt")
    mask_dir = os.path.join(root, _MASK_DIRS[split])
    if split == "train_aug":
        for path in (mask_dir, list_path):
            if not os.path.exists(path):
                raise DatasetNotFoundError(
                    f"--train_split=train_aug needs the SBD augmented masks: {path} is "
                    "missing. Put the 10,582 SegmentationClassAug/<id>.png masks and their "
                    f"id list ImageSets/Segmentation/train_aug.txt into {root}, or use "
                    "--train_split=train (1,464 images).")
    if not os.path.isfile(list_path):
        raise DatasetNotFoundError(f"VOC split list {list_path} is missing; {_LAYOUT_HINT}.")
    ids = _read_ids(list_path)
    if split == "train_aug":
        val_path = os.path.join(root, _LIST_DIR, "val.txt")
        if os.path.isfile(val_path):
            leaked = sorted(set(ids) & set(_read_ids(val_path)))
            if leaked:
                raise VOCFileError(f"{list_path} lists {len(leaked)} images of the val split "
                                   f"({', '.join(leaked[:3])}...); train_aug must exclude "
                                   "them (DeepLab's list does).")
    images = tuple(os.path.join(root, _IMAGE_DIR, f"{i}.jpg") for i in ids)
    masks = tuple(os.path.join(mask_dir, f"{i}.png") for i in ids)
    missing = [path for pair in zip(images, masks) for path in pair if not os.path.isfile(path)]
    if missing:
        more = f" ({len(missing) - 1} more files of the list are missing)" if len(missing) > 1 \
            else ""
        raise DatasetNotFoundError(f"{missing[0]}, listed in {list_path}, is missing{more}.")
    return VOCSplit(name=split, ids=tuple(ids), image_files=images, mask_files=masks,
                    root=root)


# --------------------------------------------------------------------------
# Decoding (Pillow: palette indices are kept)
# --------------------------------------------------------------------------


def _pil():
    try:
        from PIL import Image  # pylint: disable=import-outside-toplevel
    except ImportError as error:
        raise ImportError("reading VOC masks needs Pillow (pip install pillow): TensorFlow's "
                          "PNG decoder turns palette indices into colours.") from error
    return Image


def read_mask(path, num_classes=NUM_CLASSES, ignore_label=IGNORE_LABEL):
    """Class indices ``uint8 [H, W]`` stored in a palette (or grayscale) PNG.

    Raises:
      VOCFileError: unreadable file, an RGB/16-bit mask, or a value that is
        neither a class index nor `ignore_label` (named with the file).
    """
    image_module = _pil()
    try:
        with image_module.open(path) as image:
            mode = image.mode
            if mode not in ("P", "L"):
                raise VOCFileError(
                    f"mask {path} is a {mode!r} image; VOC masks are palette ('P') or 8-bit "
                    "grayscale ('L') PNGs whose pixel values are the class indices (an RGB "
                    "rendering of the palette cannot be used).")
            mask = np.array(image, dtype=np.uint8)
    except VOCFileError:
        raise
    except Exception as error:  # pylint: disable=broad-except
        raise VOCFileError(f"mask {path} cannot be read: {error}") from error
    counts = np.bincount(mask.ravel(), minlength=256)
    allowed = np.zeros(256, bool)
    allowed[:num_classes] = True
    allowed[ignore_label] = True
    bad = np.flatnonzero((counts > 0) & ~allowed)
    if bad.size:
        raise VOCFileError(f"mask {path} holds values {bad[:8].tolist()}; allowed are the class "
                           f"indices 0..{num_classes - 1} and {ignore_label} (ignore).")
    return mask


def read_voc_example(image_path, mask_path):
    """``(uint8 [H, W, 3] image, uint8 [H, W] mask)`` of one example (paths
    as str or bytes).  Raises VOCFileError naming a bad file."""
    image_path = image_path.decode() if isinstance(image_path, bytes) else image_path
    mask_path = mask_path.decode() if isinstance(mask_path, bytes) else mask_path
    image_module = _pil()
    try:
        with image_module.open(image_path) as image:
            pixels = np.array(image.convert("RGB"), dtype=np.uint8)
    except Exception as error:  # pylint: disable=broad-except
        raise VOCFileError(f"image {image_path} cannot be read: {error}") from error
    mask = read_mask(mask_path)
    if mask.shape != pixels.shape[:2]:
        raise VOCFileError(f"mask {mask_path} is {mask.shape[0]}x{mask.shape[1]} but its image "
                           f"{image_path} is {pixels.shape[0]}x{pixels.shape[1]}.")
    return pixels, mask


def voc_file_error(error):
    """The VOCFileError message inside a tf.data error, else None (so a
    trainer can print one line naming the bad file)."""
    match = re.search(r"VOCFileError: ([^\n]*)", str(getattr(error, "message", error)))
    return match.group(1) if match else None


# --------------------------------------------------------------------------
# Pipelines
# --------------------------------------------------------------------------


def _check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def _check_scale_range(scale_range):
    low, high = (float(v) for v in scale_range)
    if not 0 < low <= high:
        raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, "
                         f"got {scale_range!r}.")
    return low, high


def _normalise(image):
    return ((tf.cast(image, tf.float32) / 255.0 - tf.constant(IMAGENET_MEAN, tf.float32))
            / tf.constant(IMAGENET_STD, tf.float32))


def _augment(image, label, crop_size, scale_range, seed):
    """Random scale, pad (mean / ignore), random crop, random flip."""
    sub = tf.random.experimental.stateless_split(seed, num=3)
    scale = tf.random.stateless_uniform([], seed=sub[0], minval=scale_range[0],
                                        maxval=scale_range[1])
    size = tf.cast(tf.shape(label), tf.float32)
    new_size = tf.maximum(tf.cast(tf.round(size * scale), tf.int32), 1)
    image = tf.image.resize(_normalise(image), new_size, method="bilinear")
    label = tf.image.resize(tf.cast(label, tf.int32)[..., None], new_size,
                            method="nearest")[..., 0]
    pad_h = tf.maximum(crop_size - new_size[0], 0)
    pad_w = tf.maximum(crop_size - new_size[1], 0)
    image = tf.pad(image, [[0, pad_h], [0, pad_w], [0, 0]])
    label = tf.pad(label, [[0, pad_h], [0, pad_w]], constant_values=IGNORE_LABEL)
    both = tf.concat([image, tf.cast(label, tf.float32)[..., None]], axis=-1)
    both = tf.image.stateless_random_crop(both, [crop_size, crop_size, 4], seed=sub[1])
    both = tf.image.stateless_random_flip_left_right(both, seed=sub[2])
    return both[..., :3], tf.cast(both[..., 3], tf.int32)


def make_voc_pipeline(split, *, batch_size, training, crop_size=513, seed=0, epoch=0,
                      drop_remainder=True, input_context=None, take=None,
                      scale_range=SCALE_RANGE):
    """Batched ``(images float32, labels int32)`` of a VOCSplit.

    Training: the ``(seed, epoch)`` file permutation (then `take`, then
    sharding over input pipelines), augmented ``crop_size`` squares,
    batches of the per-replica size of `batch_size`.  Evaluation: file
    order, full images one at a time (`batch_size`, `crop_size` unused):
    ``[1, H, W, 3]`` and ``[1, H, W]``.
    """
    crop_size = _check_positive_int(crop_size, "crop_size")
    batch_size = _check_positive_int(batch_size, "batch_size")
    seed = _check_nonneg_int(seed, "seed")
    epoch = _check_nonneg_int(epoch, "epoch")
    scale_range = _check_scale_range(scale_range)
    order = imagenet_file_order(len(split), training=training, seed=seed, epoch=epoch,
                                input_context=input_context, take=take)
    ds = tf.data.Dataset.from_tensor_slices((
        tf.constant([split.image_files[i] for i in order], tf.string, shape=[len(order)]),
        tf.constant([split.mask_files[i] for i in order], tf.string, shape=[len(order)]),
        tf.constant(order, tf.int64, shape=[len(order)])))
    key = _epoch_key(seed, epoch)

    def load(image_path, mask_path, index):
        image, label = tf.numpy_function(read_voc_example, [image_path, mask_path],
                                         [tf.uint8, tf.uint8], stateful=False)
        image.set_shape([None, None, 3])
        label.set_shape([None, None])
        if not training:
            return _normalise(image), tf.cast(label, tf.int32)
        example_seed = tf.stack([tf.constant(key, tf.int64), index])
        return _augment(image, label, crop_size, scale_range, example_seed)

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if training:
        if input_context is not None:
            batch_size = input_context.get_per_replica_batch_size(batch_size)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    else:
        ds = ds.batch(1)
    return ds.prefetch(tf.data.AUTOTUNE)
