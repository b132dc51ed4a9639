"""ImageNet(-style) input pipelines: class-folder trees and prepared TFDS data.

Nothing here ever downloads.  ImageNet is read either from a directory tree in
the standard "class folders" layout::

    <root>/train/<class_name>/*.JPEG
    <root>/val/<class_name>/*.JPEG

(extensions ``.jpeg``, ``.jpg``, ``.png`` in any case), or from a TensorFlow
Datasets ``imagenet2012`` directory that has already been prepared.

Preprocessing (shared by both sources, see :func:`preprocess_imagenet_image`):

* decoding with ``tf.io.decode_image(channels=3, expand_animations=False)``,
  which handles grayscale, CMYK JPEGs, and PNG files (also PNGs with a
  ``.JPEG`` name, as found in ImageNet);
* training: Inception-style random-resized crop (area fraction in
  ``(0.08, 1)``, aspect ratio in ``(3/4, 4/3)``, falling back to the whole
  image after 10 failed attempts) resized to ``image_size`` x ``image_size``,
  random horizontal flip, optional (off by default) colour jitter;
* evaluation: resize so that the shorter side is ``round(image_size / 0.875)``
  (256 for 224) keeping the aspect ratio, then a central ``image_size`` crop;
* normalisation ``(x / 255 - IMAGENET_MEAN) / IMAGENET_STD`` (RGB order).

All resizing is bilinear with anti-aliasing.

Reproducibility contract (as in :mod:`data_tf.image_pipelines`): for a given
``(seed, epoch)`` the training file order is a fixed numpy permutation, and
every random draw for an example is made with ``tf.random.stateless_*`` /
``tf.image.stateless_*`` ops seeded from ``(seed, epoch, example index)``,
where *example index* is the position of the file in ``ImageFolderSplit.files``
(for TFDS: the position of the example in the unshuffled input stream).
"""

from __future__ import annotations

import dataclasses
import numbers
import os

import numpy as np
import tensorflow as tf

from data_tf.image_datasets import DatasetNotFoundError
from data_tf.image_pipelines import _check_nonneg_int, _epoch_key

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "ImageFolderSplit",
    "find_image_folder",
    "load_imagenet_folders",
    "imagenet_file_order",
    "preprocess_imagenet_image",
    "make_imagenet_pipeline",
    "load_tfds_imagenet",
    "make_tfds_imagenet_pipeline",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Lower-case file extensions recognised as images.
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")

# Evaluation resize: shorter side = round(image_size / EVAL_CROP_FRACTION).
EVAL_CROP_FRACTION = 0.875

# Random-resized-crop parameters (Szegedy et al. 2015 / torchvision defaults).
RRC_AREA_RANGE = (0.08, 1.0)
RRC_ASPECT_RATIO_RANGE = (3.0 / 4.0, 4.0 / 3.0)
RRC_MAX_ATTEMPTS = 10

SPLITS = ("train", "val")
TFDS_NAME = "imagenet2012"

_LAYOUT_HINT = ("expected the class-folder layout <root>/train/<class_name>/*.JPEG and "
                "<root>/val/<class_name>/*.JPEG (extensions .jpeg/.jpg/.png, any case)")


# --------------------------------------------------------------------------
# Class-folder discovery
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class ImageFolderSplit:
    """One split of a class-folder image dataset.

    Attributes:
      files: absolute file paths (``str``), sorted by class name then file
        name, so the order is deterministic.
      labels: ``int64`` array ``[N]``; ``labels[i]`` is the index of the class
        folder of ``files[i]`` in ``class_names``.
      class_names: sorted class-folder names (label = index).
      root: absolute path of the split directory (``<root>/<split>``).

    Equality and hashing are by identity (``labels`` is a numpy array).
    """

    files: tuple
    labels: np.ndarray
    class_names: tuple
    root: str

    def __post_init__(self):
        if self.labels.shape != (len(self.files),):
            raise ValueError(f"{len(self.files)} files but labels have shape {self.labels.shape}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.files)


def _is_image_file(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def find_image_folder(root: str, split: str) -> ImageFolderSplit:
    """Index ``<root>/<split>/<class_name>/*.{jpeg,jpg,png}``.

    Hidden entries (names starting with ``.``) and files with other extensions
    are ignored.  Symbolic links are followed.

    Args:
      root: dataset root directory.
      split: ``"train"`` or ``"val"``.

    Raises:
      ValueError: ``split`` is not supported, or a class folder contains no
        image files (the message names the folder).
      DatasetNotFoundError: ``root`` or ``<root>/<split>`` does not exist or
        contains no class folders.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = os.path.abspath(os.path.expanduser(os.fspath(root)))
    split_dir = os.path.join(root, split)
    if not os.path.isdir(root):
        raise DatasetNotFoundError(
            f"ImageNet root directory {root} does not exist (nothing is downloaded); "
            f"{_LAYOUT_HINT}")
    if not os.path.isdir(split_dir):
        raise DatasetNotFoundError(
            f"ImageNet split directory {split_dir} does not exist; {_LAYOUT_HINT}")

    with os.scandir(split_dir) as entries:
        entries = list(entries)
    class_names = sorted(e.name for e in entries
                         if not e.name.startswith(".") and e.is_dir())
    if not class_names:
        loose = sum(1 for e in entries if e.is_file() and _is_image_file(e.name))
        extra = ""
        if loose:
            extra = (f"; it holds {loose} image files directly - move them into one "
                     f"sub-folder per class (e.g. the ImageNet validation images "
                     f"must be sorted into their synset folders)")
        raise DatasetNotFoundError(
            f"ImageNet split directory {split_dir} contains no class folders{extra}; "
            f"{_LAYOUT_HINT}")

    files, labels = [], []
    for label, name in enumerate(class_names):
        class_dir = os.path.join(split_dir, name)
        with os.scandir(class_dir) as it:
            names = sorted(e.name for e in it if _is_image_file(e.name) and e.is_file())
        if not names:
            raise ValueError(
                f"class folder {class_dir} contains no image files "
                f"(extensions {', '.join(IMAGE_EXTENSIONS)}, any case)")
        files.extend(os.path.join(class_dir, n) for n in names)
        labels.extend([label] * len(names))
    return ImageFolderSplit(files=tuple(files), labels=np.asarray(labels, dtype=np.int64),
                            class_names=tuple(class_names), root=split_dir)


def load_imagenet_folders(root: str) -> tuple[ImageFolderSplit, ImageFolderSplit]:
    """Index ``<root>/train`` and ``<root>/val``; returns ``(train, val)``.

    Raises:
      DatasetNotFoundError: see :func:`find_image_folder`.
      ValueError: an empty class folder, or the two splits do not have the same
        class folders (the message lists the differences).
    """
    train = find_image_folder(root, "train")
    val = find_image_folder(root, "val")
    if train.class_names != val.class_names:
        missing = sorted(set(train.class_names) - set(val.class_names))
        extra = sorted(set(val.class_names) - set(train.class_names))
        parts = []
        if missing:
            parts.append(f"missing from {val.root}: {_short_list(missing)}")
        if extra:
            parts.append(f"not in {train.root}: {_short_list(extra)}")
        raise ValueError(
            f"train and val class folders differ ({len(train.class_names)} vs "
            f"{len(val.class_names)} classes); " + "; ".join(parts))
    return train, val


def _short_list(names, limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in total)" if len(names) > limit else "")


# --------------------------------------------------------------------------
# Preprocessing (shared by the folder and TFDS pipelines)
# --------------------------------------------------------------------------


def _check_image_size(image_size) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral) \
            or image_size <= 0:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    return int(image_size)


def _check_color_jitter(color_jitter) -> float:
    value = float(color_jitter)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"color_jitter must be in [0, 1), got {color_jitter!r}")
    return value


def _decode(image: tf.Tensor) -> tf.Tensor:
    """Encoded bytes -> uint8 ``[H, W, 3]``; a uint8 tensor is made 3-channel."""
    if image.dtype == tf.string:
        image = tf.io.decode_image(image, channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        return image
    if image.dtype != tf.uint8:
        raise ValueError(f"images must be encoded strings or uint8, got {image.dtype}")
    if image.shape.rank == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    elif image.shape[-1] == 4:
        image = image[..., :3]
    return tf.ensure_shape(image, [None, None, 3])


def _resize(image, size):
    return tf.image.resize(image, size, method="bilinear", antialias=True)


def _eval_crop(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """Resize shorter side to round(image_size / 0.875), central crop (float)."""
    resize_to = int(round(image_size / EVAL_CROP_FRACTION))
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    hf, wf = tf.cast(h, tf.float64), tf.cast(w, tf.float64)
    target = tf.constant(resize_to, tf.float64)
    new_h = tf.where(h <= w, resize_to,
                     tf.cast(tf.math.round(hf * target / wf), tf.int32))
    new_w = tf.where(h <= w, tf.cast(tf.math.round(wf * target / hf), tf.int32),
                     resize_to)
    new_h = tf.maximum(new_h, resize_to)
    new_w = tf.maximum(new_w, resize_to)
    x = _resize(image, tf.stack([new_h, new_w]))
    top = (new_h - image_size) // 2
    left = (new_w - image_size) // 2
    return tf.slice(x, tf.stack([top, left, 0]), [image_size, image_size, 3])


def _train_crop(image: tf.Tensor, image_size: int, seed: tf.Tensor) -> tf.Tensor:
    """Inception-style random-resized crop to ``image_size`` (float)."""
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]], tf.float32),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=RRC_ASPECT_RATIO_RANGE,
        area_range=RRC_AREA_RANGE,
        max_attempts=RRC_MAX_ATTEMPTS,
        use_image_if_no_bounding_boxes=True)
    crop = tf.slice(image, begin, size)
    return _resize(crop, [image_size, image_size])


def preprocess_imagenet_image(image, *, training: bool, image_size: int = 224,
                              seed=None, color_jitter: float = 0.0) -> tf.Tensor:
    """Preprocess one image (graph-compatible, usable inside ``Dataset.map``).

    Args:
      image: encoded image bytes (scalar ``tf.string``) or a ``uint8`` tensor
        ``[H, W, C]`` with C in {1, 3, 4}.
      training: random-resized crop + flip (+ jitter) if True; otherwise the
        deterministic resize + central crop.
      image_size: output side length.
      seed: stateless seed, shape ``[2]`` integer tensor; required when
        ``training``.
      color_jitter: strength ``s`` of the training colour jitter (brightness
        delta ``s``, contrast and saturation factors in ``[1-s, 1+s]``, applied
        on the [0, 1] scale in this fixed order, then clipped); 0 = off.

    Returns:
      ``float32 [image_size, image_size, 3]`` normalised with
      ``IMAGENET_MEAN`` / ``IMAGENET_STD``.
    """
    image_size = _check_image_size(image_size)
    color_jitter = _check_color_jitter(color_jitter)
    image = _decode(tf.convert_to_tensor(image))
    if training:
        if seed is None:
            raise ValueError("a stateless seed is required for training preprocessing")
        sub = tf.random.experimental.stateless_split(seed, num=5)
        x = _train_crop(image, image_size, sub[0])
        x = tf.image.stateless_random_flip_left_right(x, seed=sub[1])
        x = x / 255.0
        if color_jitter > 0:
            s = color_jitter
            x = tf.image.stateless_random_brightness(x, max_delta=s, seed=sub[2])
            x = tf.image.stateless_random_contrast(x, 1.0 - s, 1.0 + s, seed=sub[3])
            x = tf.image.stateless_random_saturation(x, 1.0 - s, 1.0 + s, seed=sub[4])
            x = tf.clip_by_value(x, 0.0, 1.0)
    else:
        x = _eval_crop(image, image_size) / 255.0
    x = (x - tf.constant(IMAGENET_MEAN, tf.float32)) / tf.constant(IMAGENET_STD, tf.float32)
    return tf.ensure_shape(x, [image_size, image_size, 3])


# --------------------------------------------------------------------------
# Class-folder pipeline
# --------------------------------------------------------------------------


def _check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
            or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def _check_take(take):
    if take is None:
        return None
    if isinstance(take, bool) or not isinstance(take, numbers.Integral) or take <= 0:
        raise ValueError(f"take must be a positive integer or None, got {take!r}")
    return int(take)


def imagenet_file_order(num_files: int, *, training: bool, seed: int = 0, epoch: int = 0,
                        input_context=None, take=None) -> np.ndarray:
    """Indices (into ``ImageFolderSplit.files``) read by one pipeline, in order.

    Training: the ``(seed, epoch)`` permutation; evaluation: ``0..N-1``.  Then
    the first ``take`` entries are kept, then pipeline ``k`` of ``n``
    (``input_context``) keeps positions ``k, k+n, k+2n, ...``.
    """
    seed = _check_nonneg_int(seed, "seed")
    epoch = _check_nonneg_int(epoch, "epoch")
    take = _check_take(take)
    if training:
        order = np.random.default_rng([seed, epoch]).permutation(int(num_files))
    else:
        order = np.arange(int(num_files))
    if take is not None:
        order = order[:take]
    if input_context is not None and input_context.num_input_pipelines > 1:
        order = order[input_context.input_pipeline_id::input_context.num_input_pipelines]
    return order.astype(np.int64)


def make_imagenet_pipeline(split: ImageFolderSplit, *, batch_size: int, training: bool,
                           image_size: int = 224, seed: int = 0, epoch: int = 0,
                           drop_remainder: bool = False,
                           input_context: "tf.distribute.InputContext | None" = None,
                           take: int | None = None, color_jitter: float = 0.0
                           ) -> tf.data.Dataset:
    """Batched, normalised, deterministic dataset over a class-folder split.

    Args:
      split: from :func:`find_image_folder` / :func:`load_imagenet_folders`.
      batch_size: global batch size; with ``input_context`` the per-replica
        size ``input_context.get_per_replica_batch_size(batch_size)`` is used.
      training: shuffle (``(seed, epoch)`` permutation) and augment if True;
        else file order and eval preprocessing.
      image_size: output side length (224 for standard ImageNet).
      seed, epoch: non-negative integers; order and augmentation are pure
        functions of ``(seed, epoch, file index)``.
      drop_remainder: drop the final partial batch.
      input_context: optional ``tf.distribute.InputContext``; the shuffled file
        list is sharded so pipelines see disjoint files covering the epoch.
      take: optional cap on the number of files (applied after the shuffle and
        before sharding) for quick runs.
      color_jitter: training colour-jitter strength (0 = off), see
        :func:`preprocess_imagenet_image`.

    Returns:
      A dataset of ``(float32 [B, image_size, image_size, 3], int32 [B])``.
    """
    batch_size = _check_batch_size(batch_size)
    image_size = _check_image_size(image_size)
    color_jitter = _check_color_jitter(color_jitter)
    order = imagenet_file_order(len(split.files), training=training, seed=seed, epoch=epoch,
                                input_context=input_context, take=take)
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    files = [split.files[i] for i in order]
    labels = np.asarray(split.labels)[order].astype(np.int32)
    key = _epoch_key(int(seed), int(epoch))

    def load(path, label, index):
        example_seed = tf.stack([tf.constant(key, tf.int64), index])
        x = preprocess_imagenet_image(tf.io.read_file(path), training=training,
                                      image_size=image_size, seed=example_seed,
                                      color_jitter=color_jitter)
        return x, label

    ds = tf.data.Dataset.from_tensor_slices(
        (tf.constant(files, tf.string), tf.constant(labels, tf.int32),
         tf.constant(order, tf.int64)))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------
# TensorFlow Datasets
# --------------------------------------------------------------------------


def _tfds_not_found(data_dir, detail: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"ImageNet ('{TFDS_NAME}') is not available in TFDS data_dir {data_dir} "
        f"({detail}); nothing is downloaded. ImageNet cannot be downloaded automatically: "
        f"get ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from image-net.org, "
        f"then either prepare them with "
        f"`tfds build {TFDS_NAME} --manual_dir=<dir with the tars> --data_dir={data_dir}`, "
        f"or extract them as class folders and pass that directory via --data_dir "
        f"({_LAYOUT_HINT}).")


def load_tfds_imagenet(data_dir: str):
    """Open a prepared TFDS ``imagenet2012`` from ``data_dir``.

    Returns:
      ``(train, validation, num_classes)``: ``tf.data.Dataset`` s of dicts with
      ``'image'`` (encoded JPEG bytes, decoding is done by the pipeline) and
      ``'label'`` (int64), in the on-disk order (``shuffle_files=False``).

    Raises:
      DatasetNotFoundError: tensorflow-datasets is missing or the dataset is
        not prepared in ``data_dir`` (the message says how to prepare it).
    """
    data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    try:
        import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise _tfds_not_found(data_dir, "tensorflow-datasets is not installed") from exc
    try:
        builder = tfds.builder(TFDS_NAME, data_dir=data_dir)
        prepared = builder.is_prepared()
    except Exception as exc:  # pylint: disable=broad-except
        raise _tfds_not_found(data_dir, f"builder failed: {exc}") from exc
    if not prepared:
        raise _tfds_not_found(data_dir, f"not prepared: nothing at {builder.data_dir}")
    decoders = {"image": tfds.decode.SkipDecoding()}
    train = builder.as_dataset(split="train", shuffle_files=False, decoders=decoders)
    val = builder.as_dataset(split="validation", shuffle_files=False, decoders=decoders)
    train = train.map(lambda ex: {"image": ex["image"], "label": ex["label"]})
    val = val.map(lambda ex: {"image": ex["image"], "label": ex["label"]})
    num_classes = int(builder.info.features["label"].num_classes)
    return train, val, num_classes


def make_tfds_imagenet_pipeline(ds: tf.data.Dataset, *, batch_size: int, training: bool,
                                image_size: int = 224, seed: int = 0, epoch: int = 0,
                                drop_remainder: bool = False,
                                input_context: "tf.distribute.InputContext | None" = None,
                                take: int | None = None, color_jitter: float = 0.0,
                                shuffle_buffer: int = 10_000) -> tf.data.Dataset:
    """The :func:`make_imagenet_pipeline` preprocessing for TFDS examples.

    ``ds`` yields dicts with ``'image'`` (encoded bytes or uint8 ``[H,W,C]``)
    and ``'label'``, in a deterministic order (e.g. from
    :func:`load_tfds_imagenet`).  Each example's index is its position in
    ``ds``.  Training shuffles with a ``shuffle_buffer``-sized buffer seeded
    from ``(seed, epoch)`` (identical on every worker), then ``take`` caps the
    number of examples, then ``input_context`` keeps every n-th example so
    pipelines see disjoint examples covering the epoch.

    Returns:
      A dataset of ``(float32 [B, image_size, image_size, 3], int32 [B])``.
    """
    batch_size = _check_batch_size(batch_size)
    image_size = _check_image_size(image_size)
    color_jitter = _check_color_jitter(color_jitter)
    seed = _check_nonneg_int(seed, "seed")
    epoch = _check_nonneg_int(epoch, "epoch")
    take = _check_take(take)
    if isinstance(shuffle_buffer, bool) or not isinstance(shuffle_buffer, numbers.Integral) \
            or shuffle_buffer <= 0:
        raise ValueError(f"shuffle_buffer must be a positive integer, got {shuffle_buffer!r}")
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    key = _epoch_key(seed, epoch)

    ds = ds.enumerate()
    if training:
        shuffle_seed = int(np.random.SeedSequence([seed, epoch, 0x1A6E]).generate_state(
            1, np.uint32)[0])
        ds = ds.shuffle(int(shuffle_buffer), seed=shuffle_seed, reshuffle_each_iteration=False)
    if take is not None:
        ds = ds.take(take)
    if input_context is not None and input_context.num_input_pipelines > 1:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)

    def load(index, example):
        example_seed = tf.stack([tf.constant(key, tf.int64), tf.cast(index, tf.int64)])
        x = preprocess_imagenet_image(example["image"], training=training,
                                      image_size=image_size, seed=example_seed,
                                      color_jitter=color_jitter)
        return x, tf.cast(example["label"], tf.int32)

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)
