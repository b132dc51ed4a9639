"""A user's own images as an :class:`~data_tf.image_datasets.ImageDataset`.

Four sources, each turned into the same in-memory dataset the searches and
trainers read (nothing is downloaded):

* :func:`dataset_from_folder`: a class-folder tree, the layout of
  ``keras.utils.image_dataset_from_directory`` (one sub-folder per class;
  labels ``0..K-1`` follow the alphanumeric order of the class-folder names;
  ``.jpeg``/``.jpg``/``.png``/``.bmp``/``.gif`` files, a GIF's first frame),
  optionally split into ``train/`` and ``test/`` sub-trees.
* :func:`dataset_from_arrays`: numpy ``(x, y)``.
* :func:`dataset_from_tf_data`: a ``tf.data.Dataset`` of ``(image, label)``
  examples or batches.
* :func:`dataset_from_tfds`: a TFDS image-classification dataset that is
  already prepared under a data directory.

Conventions shared by all of them:

* Images are stored as ``uint8`` (0..255) when they come as integers and as
  ``float32`` when they come as floats; float images are assumed to lie in
  ``float_range`` (default ``(0, 1)``) and are mapped onto [0, 1]; NaN, inf
  or values outside the range are refused.
* Mixed sizes are resized (bilinear, antialiased, aspect ratio not kept) to
  ``image_size`` x ``image_size``; without ``image_size`` every image must
  already have the same size, which is kept.
* Mixed channel counts: RGB if any image is in colour, else one channel
  (grayscale images are repeated to three channels, an alpha channel is
  dropped).
* Images must be at least ``MIN_IMAGE_SIDE`` pixels on each side.
* Normalisation statistics (``mean``, ``std``) come from the training split
  only; a validation split is carved from the training images later
  (``make_search_inputs``/``make_train_inputs``, ``validation_fraction``).
* Bad input raises :class:`ImageDataError` (a ``ValueError``) with one line
  naming the bad file or value and what is allowed.
"""

from __future__ import annotations

import contextlib
import logging
import numbers
import os
import re

import numpy as np

from data_tf.image_datasets import ImageDataset, channel_mean_std

__all__ = [
    "ImageDataError",
    "MIN_IMAGE_SIDE",
    "IMAGE_EXTENSIONS",
    "DEFAULT_TEST_FRACTION",
    "DEFAULT_MAX_EXAMPLES",
    "dataset_from_folder",
    "dataset_from_arrays",
    "dataset_from_tf_data",
    "dataset_from_tfds",
]

# The DARTS CIFAR network (stem, then two stride-2 reduction cells) turns an
# 8x8 image into 2x2 maps before global pooling; 8x8 (scikit-learn's digits)
# is the smallest input the built-in datasets use, and the smallest accepted.
MIN_IMAGE_SIDE = 8

# The formats image_dataset_from_directory reads (Keras data-loading docs).
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".gif")

# Share of each class held out as the test split when the data has none.
DEFAULT_TEST_FRACTION = 0.2

# Most examples a tf.data / TFDS dataset is materialised into memory with.
DEFAULT_MAX_EXAMPLES = 200_000


class ImageDataError(ValueError):
    """Bad image data; the message is one line naming the file/value and what is allowed."""


# --------------------------------------------------------------------------
# Checks shared by every source
# --------------------------------------------------------------------------


def _check_image_size(image_size):
    if image_size is None:
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral):
        raise ImageDataError(f"image_size must be an integer >= {MIN_IMAGE_SIDE}, "
                             f"got {image_size!r}")
    if image_size < MIN_IMAGE_SIDE:
        raise ImageDataError(
            f"image_size={image_size} is too small: the network needs images of at least "
            f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} (stem + 2 stride-2 reductions).")
    return int(image_size)


def _check_min_size(height, width, what):
    if height < MIN_IMAGE_SIDE or width < MIN_IMAGE_SIDE:
        raise ImageDataError(
            f"{what} is {height}x{width} but the network needs images of at least "
            f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} (stem + 2 stride-2 reductions); pass "
            f"image_size >= {MIN_IMAGE_SIDE} (--image_size) to resize.")


def _check_fraction(test_fraction):
    try:
        fraction = float(test_fraction)
    except (TypeError, ValueError):
        fraction = float("nan")
    if not 0.0 < fraction < 1.0:
        raise ImageDataError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    return fraction


def _check_float_range(float_range):
    try:
        low, high = (float(v) for v in float_range)
    except (TypeError, ValueError):
        raise ImageDataError(f"float_range must be a pair (low, high), got "
                             f"{float_range!r}") from None
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ImageDataError(f"float_range must be finite with low < high, got {float_range!r}")
    return low, high


def _to_storage(images, what, float_range):
    """uint8 stays uint8 (other integers within 0..255 become uint8); floats
    are checked to be finite and within float_range, then mapped to [0, 1]."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    if images.dtype == np.bool_ or not (np.issubdtype(images.dtype, np.integer)
                                        or np.issubdtype(images.dtype, np.floating)):
        raise ImageDataError(f"{what} has dtype {images.dtype}; allowed: uint8 (0..255), other "
                             "integers within 0..255, or floats")
    if images.size == 0:
        return images.astype(np.uint8)
    if np.issubdtype(images.dtype, np.integer):
        low, high = int(images.min()), int(images.max())
        if low < 0 or high > 255:
            raise ImageDataError(f"{what} is {images.dtype} with values in [{low}, {high}]; "
                                 "integer images must lie in 0..255")
        return images.astype(np.uint8)
    finite = np.isfinite(images)
    if not finite.all():
        index = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise ImageDataError(f"{what} holds {images[index]} at index {index}; float images "
                             "must be finite (no NaN or inf)")
    low, high = _check_float_range(float_range)
    found_low, found_high = float(images.min()), float(images.max())
    if found_low < low or found_high > high:
        hint = (" (0..255 floats: pass float_range=(0, 255))"
                if found_high > high and found_high <= 255 and found_low >= 0 else "")
        raise ImageDataError(
            f"{what} holds float values in [{found_low:g}, {found_high:g}] but float images "
            f"are taken to lie in float_range=({low:g}, {high:g}){hint}")
    scaled = (images.astype(np.float64) - low) / (high - low)
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


def _check_labels(labels, num_images, what, num_classes=None):
    """int64 labels [N] with values 0..num_classes-1 (one-line errors)."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ImageDataError(f"{what} labels have shape {labels.shape}; labels must be integer "
                             "class ids of shape [N] (one-hot labels: take argmax)")
    if labels.shape[0] != num_images:
        raise ImageDataError(f"{what}: {num_images} images but {labels.shape[0]} labels; "
                             "x and y must have the same length")
    if labels.dtype == np.bool_ or not (np.issubdtype(labels.dtype, np.integer)
                                        or np.issubdtype(labels.dtype, np.floating)):
        raise ImageDataError(f"{what} labels have dtype {labels.dtype}; labels must be "
                             "integers 0..num_classes-1")
    if np.issubdtype(labels.dtype, np.floating):
        bad = ~(np.isfinite(labels) & (labels == np.round(labels)))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ImageDataError(f"{what} label {labels[i].item()!r} at index {i} is not an "
                                 "integer; labels must be integers 0..num_classes-1")
    labels = labels.astype(np.int64)
    if labels.size:
        bad = labels < 0 if num_classes is None else (labels < 0) | (labels >= num_classes)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            allowed = ("integers >= 0" if num_classes is None
                       else f"0..{num_classes - 1} ({num_classes} classes)")
            raise ImageDataError(f"{what} label {labels[i]} at index {i} is out of range; "
                                 f"allowed: {allowed}")
    return labels


def _class_names(class_names, train_labels, test_labels, what):
    """Class names (given, or '0'..'K-1' with K = largest label + 1)."""
    if class_names is not None:
        names = tuple(str(n) for n in class_names)
        if len(set(names)) != len(names):
            raise ImageDataError(f"{what}: class_names repeat a name: {list(names)}")
        return names
    largest = max(int(train_labels.max()) if train_labels.size else -1,
                  int(test_labels.max()) if test_labels is not None and test_labels.size else -1)
    return tuple(str(i) for i in range(largest + 1))


def _finish(name, train_x, train_y, test_x, test_y, class_names, source,
            allow_horizontal_flip, what):
    """Checks shared by every source, then the ImageDataset (statistics of train only)."""
    if train_x.shape[0] == 0:
        raise ImageDataError(f"{what} holds no training images")
    present = np.unique(train_y)
    if present.size < 2:
        only = class_names[int(present[0])] if present.size else "?"
        raise ImageDataError(f"{what} has only one class ({only!r}) in its training images; "
                             "classification needs at least 2 classes")
    _check_min_size(train_x.shape[1], train_x.shape[2], f"{what}: each image")
    if test_x is not None and test_x.shape[1:] != train_x.shape[1:]:
        raise ImageDataError(f"{what}: test images are {test_x.shape[1:]} but training images "
                             f"are {train_x.shape[1:]}; both splits need one [H, W, C]")
    if test_x is not None and test_x.dtype != train_x.dtype:
        raise ImageDataError(f"{what}: test images are {test_x.dtype} but training images are "
                             f"{train_x.dtype}; give both splits the same dtype")
    mean, std = channel_mean_std(train_x)
    return ImageDataset(
        name=str(name), train_images=np.ascontiguousarray(train_x),
        train_labels=train_y.astype(np.int64),
        test_images=None if test_x is None else np.ascontiguousarray(test_x),
        test_labels=None if test_y is None else test_y.astype(np.int64),
        num_classes=len(class_names), class_names=tuple(class_names), source=str(source),
        allow_horizontal_flip=bool(allow_horizontal_flip), mean=mean, std=std)


def _hold_out_test_split(train_x, train_y, test_fraction, seed):
    """(train x, train y, test x, test y, what was held out, in words): a
    class-stratified test split carved from the training images."""
    fraction = _check_fraction(test_fraction)
    train_idx, test_idx = _stratified_test_split(train_y, fraction, seed)
    held = (f"{len(test_idx)} images, {fraction:.0%} of each class, held out as the test split "
            f"with seed {seed}")
    return train_x[train_idx], train_y[train_idx], train_x[test_idx], train_y[test_idx], held


def _stratified_test_split(labels, fraction, seed):
    """(train_idx, test_idx): about ``fraction`` of every class (one at least,
    never a class's last image) held out, by a seeded permutation."""
    rng = np.random.default_rng([int(seed), 0x7E57])
    train_idx, test_idx = [], []
    for k in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == k))
        n_test = min(max(1, int(round(len(members) * fraction))), len(members) - 1)
        test_idx.append(members[:n_test])
        train_idx.append(members[n_test:])
    return (np.sort(np.concatenate(train_idx)).astype(np.int64),
            np.sort(np.concatenate(test_idx)).astype(np.int64))


# --------------------------------------------------------------------------
# Variable-size images (files, tf.data examples) -> one array
# --------------------------------------------------------------------------


def _resize(image, image_size):
    """Bilinear (antialiased) resize of one HxWxC image to image_size^2, same dtype kind."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if image.shape[0] == image.shape[1] == image_size:
        return image
    out = tf.image.resize(tf.convert_to_tensor(image, tf.float32), [image_size, image_size],
                          method="bilinear", antialias=True).numpy()
    if image.dtype == np.uint8:
        return np.clip(np.round(out), 0, 255).astype(np.uint8)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


class _Stacker:
    """Collects HxWxC images of one dtype, resized when image_size is set.

    ``files``: the images were decoded from files, whose 2 and 4 channels are
    gray/RGB plus alpha (dropped).  Otherwise channel counts are kept when they
    all agree and only a mix of 1 and 3 is allowed (gray repeated to RGB).
    """

    def __init__(self, image_size, float_range, size_hint, files):
        self.image_size, self.float_range, self.size_hint = image_size, float_range, size_hint
        self.files = files
        self.images, self.first = [], None

    def add(self, image, what):
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[..., None]
        if image.ndim != 3 or image.shape[-1] < 1:
            raise ImageDataError(f"{what} has shape {image.shape}; images must be [H, W, C]")
        image = _to_storage(image, what, self.float_range)
        if self.first is not None and image.dtype != self.images[0].dtype:
            raise ImageDataError(f"{what} is {image.dtype} but {self.first[0]} is "
                                 f"{self.images[0].dtype}; give every image one dtype")
        if self.files and image.shape[-1] in (2, 4):
            image = image[..., :-1]
        if self.image_size is not None:
            image = _resize(image, self.image_size)
        elif self.first is not None and image.shape[:2] != self.images[0].shape[:2]:
            (h0, w0), (h1, w1) = self.images[0].shape[:2], image.shape[:2]
            raise ImageDataError(
                f"images differ in size: {self.first[0]} is {h0}x{w0}, {what} is {h1}x{w1}; "
                f"{self.size_hint} to resize every image to N x N")
        else:
            _check_min_size(image.shape[0], image.shape[1], what)
        if self.first is None:
            self.first = (what,)
        self.images.append(image)

    def stack(self, what):
        """[N, H, W, C] array of everything added: C = 3 if any image is in
        colour (gray images repeated), else 1; other channel counts must agree."""
        counts = sorted({img.shape[-1] for img in self.images})
        if len(counts) == 1:
            return np.stack(self.images)
        if counts != [1, 3]:
            raise ImageDataError(f"{what} mixes images of {counts} channels; allowed: one "
                                 "channel count, or a mix of 1 (gray) and 3 (RGB)")
        return np.stack([np.repeat(img, 3, axis=-1) if img.shape[-1] == 1 else img
                         for img in self.images])


# --------------------------------------------------------------------------
# Class-folder tree
# --------------------------------------------------------------------------


def _image_files(class_dir):
    """Sorted image files under class_dir (recursive, as os.walk; other files skipped)."""
    found = []
    for root, dirs, files in os.walk(class_dir):
        dirs.sort()
        for fname in sorted(files):
            if fname.lower().endswith(IMAGE_EXTENSIONS) and not fname.startswith("."):
                found.append(os.path.join(root, fname))
    return found


def _class_folders(directory):
    return sorted(e for e in os.listdir(directory)
                  if not e.startswith(".") and os.path.isdir(os.path.join(directory, e)))


def _tf_reason(error):
    """First line of a TF op error without its '{{function_node ...}}' / '[Op:...]' parts."""
    text = re.sub(r"\{\{.*?\}\}", "", str(error.message or "")).strip()
    text = text.splitlines()[0] if text else type(error).__name__
    return text.split(" [Op:")[0].strip()


def _read_image(path):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as error:
        raise ImageDataError(f"{path}: cannot be read ({error.strerror or error})") from None
    if not raw:
        raise ImageDataError(f"{path}: empty file, not a JPEG/PNG/BMP/GIF image")
    try:
        image = tf.io.decode_image(raw, channels=0, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
        raise ImageDataError(f"{path}: not a readable JPEG/PNG/BMP/GIF image "
                             f"({_tf_reason(error)})") from None
    return image.numpy()


def _scan_tree(directory, class_names=None, role="training"):
    """[(path, label)] of a class-folder tree; class names sorted (or given)."""
    folders = _class_folders(directory)
    if class_names is None:
        files = {c: _image_files(os.path.join(directory, c)) for c in folders}
        with_images = [c for c in folders if files[c]]
        if not with_images:
            raise ImageDataError(
                f"{directory} holds no {role} images: expected one sub-folder per class "
                f"holding {'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} files "
                f"({directory}/<class>/<image>)")
        empty = [c for c in folders if not files[c]]
        if empty:
            raise ImageDataError(
                f"class folder {os.path.join(directory, empty[0])} holds no "
                f"{'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} images; remove it or add images")
        if len(folders) < 2:
            raise ImageDataError(
                f"{directory} has only one class folder ({folders[0]!r}); classification "
                "needs at least 2 class sub-folders")
        class_names = tuple(folders)
    else:
        unknown = [c for c in folders if c not in class_names]
        if unknown:
            raise ImageDataError(
                f"{os.path.join(directory, unknown[0])}: class folder not among the training "
                f"classes {list(class_names)}")
        files = {c: _image_files(os.path.join(directory, c)) for c in folders}
        if not any(files.values()):
            raise ImageDataError(f"{directory} holds no {role} images in class sub-folders")
    entries = [(path, class_names.index(c)) for c in folders for path in files[c]]
    return entries, tuple(class_names)


def _read_tree(entries, stacker):
    labels = []
    for path, label in entries:
        stacker.add(_read_image(path), path)
        labels.append(label)
    return np.asarray(labels, dtype=np.int64)


def dataset_from_folder(directory, *, image_size=None, test_fraction=DEFAULT_TEST_FRACTION,
                        seed=0, name=None, allow_horizontal_flip=True) -> ImageDataset:
    """Reads a class-folder tree of JPEG/PNG/BMP/GIF files into an ImageDataset.

    Layout (as ``keras.utils.image_dataset_from_directory``)::

        directory/<class_a>/<image>, directory/<class_b>/<image>, ...

    or, with a held-out split of the user's own::

        directory/train/<class>/<image>, directory/test/<class>/<image>

    Class ids follow the sorted class-folder names (of ``train/`` when
    split); files are found recursively inside each class folder, other
    files are skipped.  Without a ``test/`` sub-tree ``test_fraction`` of
    every class is held out as the test split with a fixed ``seed``, and
    ``source`` says so.

    Args:
      directory: root of the tree.
      image_size: resize every image to ``image_size`` x ``image_size``
        (bilinear, antialiased; aspect ratio not kept).  None: all images must
        have the same size, which is kept.
      test_fraction: share of each class held out when there is no ``test/``.
      seed: seed of that hold-out.
      name: dataset name; default the directory's base name.
      allow_horizontal_flip: whether mirroring keeps the label (augmentation).

    Returns:
      An ImageDataset of ``uint8`` images with 3 channels if any file is in
      colour, else 1 (alpha dropped); statistics from the training split.

    Raises:
      ImageDataError: missing/empty tree, a class folder without images,
        fewer than 2 classes, an unreadable file (named), differing sizes
        without ``image_size``, images smaller than ``MIN_IMAGE_SIDE``.
    """
    image_size = _check_image_size(image_size)
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise ImageDataError(f"{directory} is not a directory; expected a class-folder tree "
                             f"({directory}/<class>/<image>)")
    top = _class_folders(directory)
    split = "train" in top
    if split:
        others = [e for e in top if e not in ("train", "test")]
        if others:
            raise ImageDataError(
                f"{directory} has train/ and also {others[0]}/: with a train/ sub-tree only "
                "train/ and test/ are read; move class folders inside them")
        train_root = os.path.join(directory, "train")
    else:
        if "test" in top:
            raise ImageDataError(f"{directory} has test/ but no train/; put the training class "
                                 "folders in train/ or rename test/")
        train_root = directory
    size_hint = "pass image_size=N (--image_size=N)"
    stacker = _Stacker(image_size, (0.0, 1.0), size_hint, files=True)
    entries, class_names = _scan_tree(train_root)
    train_y = _read_tree(entries, stacker)
    n_train = len(train_y)
    test_y = None
    if split and os.path.isdir(os.path.join(directory, "test")):
        test_entries, _ = _scan_tree(os.path.join(directory, "test"), class_names, role="test")
        test_y = _read_tree(test_entries, stacker)
        note = f"{directory} (train/ and test/ sub-trees)"
    images = stacker.stack(directory)
    train_x = images[:n_train]
    test_x = images[n_train:] if test_y is not None else None
    if test_y is None:
        train_x, train_y, test_x, test_y, held = _hold_out_test_split(
            train_x, train_y, test_fraction, seed)
        note = f"{train_root} (no test/ sub-tree: {held})"
    return _finish(name or os.path.basename(os.path.normpath(directory)), train_x, train_y,
                   test_x, test_y, class_names, note, allow_horizontal_flip, directory)


# --------------------------------------------------------------------------
# numpy arrays
# --------------------------------------------------------------------------


def _array_images(x, what, float_range):
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ImageDataError(f"{what} has shape {x.shape}; images must be [N, H, W, C] "
                             "(or [N, H, W] for one channel)")
    return _to_storage(x, what, float_range)


def dataset_from_arrays(x, y, *, x_test=None, y_test=None, class_names=None, name="arrays",
                        float_range=(0.0, 1.0), allow_horizontal_flip=True) -> ImageDataset:
    """An ImageDataset from numpy images ``x`` ``[N, H, W, C]`` and labels ``y`` ``[N]``.

    ``uint8`` images (or other integers within 0..255) are kept as ``uint8``;
    float images must be finite and lie in ``float_range`` (default [0, 1]),
    and are stored as ``float32`` on [0, 1].  Labels are integers
    ``0..K-1``; K is ``len(class_names)`` when given, else the largest label
    plus one.  Without ``x_test``/``y_test`` the dataset has no test split
    (a search does not need one).

    Raises:
      ImageDataError: mismatched lengths, bad shapes or dtypes, NaN/inf or
        out-of-range floats, non-integer or out-of-range labels, fewer than 2
        classes, images smaller than ``MIN_IMAGE_SIDE``.
    """
    if (x_test is None) != (y_test is None):
        raise ImageDataError("give x_test and y_test together (or neither)")
    train_x = _array_images(x, "x", float_range)
    num_classes = None if class_names is None else len(class_names)
    train_y = _check_labels(y, train_x.shape[0], "y", num_classes)
    test_x = test_y = None
    if x_test is not None:
        test_x = _array_images(x_test, "x_test", float_range)
        test_y = _check_labels(y_test, test_x.shape[0], "y_test", num_classes)
    names = _class_names(class_names, train_y, test_y, name)
    if num_classes is None and test_y is not None:
        # labels of the test split beyond the training ones name classes too
        _check_labels(test_y, test_x.shape[0], "y_test", len(names))
    return _finish(name, train_x, train_y, test_x, test_y, names,
                   f"numpy arrays ({'train and test' if test_x is not None else 'no test split'})",
                   allow_horizontal_flip, name)


# --------------------------------------------------------------------------
# tf.data
# --------------------------------------------------------------------------


def _pair(element, what):
    if isinstance(element, dict):
        if "image" in element and "label" in element:
            return element["image"], element["label"]
        raise ImageDataError(f"{what}: dict elements need 'image' and 'label' keys, got "
                             f"{sorted(element)}")
    if isinstance(element, (tuple, list)) and len(element) == 2:
        return element
    raise ImageDataError(f"{what}: elements must be (image, label) pairs (or dicts with "
                         "'image' and 'label')")


def _materialise(dataset, stacker, what, max_examples):
    """Labels (list) of every example of a tf.data dataset, images into stacker."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if not isinstance(dataset, tf.data.Dataset):
        raise ImageDataError(f"{what} is a {type(dataset).__name__}, not a tf.data.Dataset")
    image_spec, _ = _pair(dataset.element_spec, what)
    rank = image_spec.shape.rank
    if rank == 4:
        dataset = dataset.unbatch()
    elif rank not in (2, 3, None):
        raise ImageDataError(f"{what}: images have shape {image_spec.shape}; expected examples "
                             "[H, W, C] or batches [B, H, W, C]")
    labels = []
    try:
        for element in dataset.as_numpy_iterator():
            image, label = _pair(element, what)
            if len(labels) >= max_examples:
                raise ImageDataError(
                    f"{what} has more than max_examples={max_examples} examples, too many to "
                    "hold in memory here; raise max_examples or pass a smaller dataset "
                    "(e.g. dataset.take(n))")
            label = np.asarray(label)
            if label.size != 1:
                raise ImageDataError(f"{what}: example {len(labels)} has label of shape "
                                     f"{label.shape}; labels must be one integer per image")
            stacker.add(image, f"{what} example {len(labels)}")
            labels.append(label.reshape(()))
    except tf.errors.OpError as error:
        raise ImageDataError(f"{what}: reading example {len(labels)} failed "
                             f"({_tf_reason(error)})") from None
    if not labels:
        raise ImageDataError(f"{what} holds no examples")
    return np.stack(labels)


def _from_tf(train, test, *, name, source, class_names, image_size, max_examples, float_range,
             allow_horizontal_flip, test_fraction=None, seed=0):
    image_size = _check_image_size(image_size)
    if isinstance(max_examples, bool) or not isinstance(max_examples, numbers.Integral) \
            or max_examples < 1:
        raise ImageDataError(f"max_examples must be a positive integer, got {max_examples!r}")
    stacker = _Stacker(image_size, float_range, "pass image_size=N (--image_size=N)",
                       files=False)
    num_classes = None if class_names is None else len(class_names)
    train_y = _materialise(train, stacker, f"{name} training data", max_examples)
    n_train = len(train_y)
    train_y = _check_labels(train_y, n_train, f"{name} training data", num_classes)
    test_y = None
    if test is not None:
        test_y = _materialise(test, stacker, f"{name} test data", max_examples)
        test_y = _check_labels(test_y, len(test_y), f"{name} test data", num_classes)
    images = stacker.stack(name)
    train_x, test_x = images[:n_train], (images[n_train:] if test_y is not None else None)
    names = _class_names(class_names, train_y, test_y, name)
    if test_y is None and test_fraction is not None:
        train_x, train_y, test_x, test_y, held = _hold_out_test_split(
            train_x, train_y, test_fraction, seed)
        source = f"{source} (no test split: {held})"
    return _finish(name, train_x, train_y, test_x, test_y, names, source,
                   allow_horizontal_flip, name)


def dataset_from_tf_data(dataset, *, test=None, class_names=None, name="tf.data",
                         image_size=None, max_examples=DEFAULT_MAX_EXAMPLES,
                         float_range=(0.0, 1.0), allow_horizontal_flip=True) -> ImageDataset:
    """An ImageDataset from a ``tf.data.Dataset`` of ``(image, label)`` (or
    ``{"image", "label"}``) examples or batches.

    Batches (images of rank 4) are unbatched; every example is read into
    memory, at most ``max_examples`` per split (more is refused).  Images
    follow the rules of :func:`dataset_from_arrays` (dtype, ``float_range``,
    channel rule of the module docstring); images of differing sizes need
    ``image_size``.  ``test`` is an optional dataset of the same kind; without
    it the result has no test split.  ``keras.utils.image_dataset_from_directory``
    yields float32 images on 0..255: pass ``float_range=(0, 255)`` for those.

    Raises:
      ImageDataError: as :func:`dataset_from_arrays`, plus elements that are
        not (image, label) pairs and more than ``max_examples`` examples.
    """
    return _from_tf(dataset, test, name=name, source="tf.data.Dataset",
                    class_names=class_names, image_size=image_size, max_examples=max_examples,
                    float_range=float_range, allow_horizontal_flip=allow_horizontal_flip)


# --------------------------------------------------------------------------
# Prepared TFDS datasets
# --------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_absl():
    """absl's Python logger at ERROR for the block, then as before."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _tfds_features(info, name):
    """(image_key, label_key) of a TFDS image-classification dataset."""
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    features = info.features
    if info.supervised_keys and len(info.supervised_keys) == 2 \
            and all(isinstance(k, str) for k in info.supervised_keys):
        image_key, label_key = info.supervised_keys
    else:
        images = [k for k, f in features.items() if isinstance(f, tfds.features.Image)]
        labels = [k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)]
        if len(images) != 1 or len(labels) != 1:
            raise ImageDataError(f"tfds:{name} is not an image-classification dataset (needs one "
                                 "Image and one ClassLabel feature)")
        image_key, label_key = images[0], labels[0]
    if not isinstance(features[image_key], tfds.features.Image) \
            or not isinstance(features[label_key], tfds.features.ClassLabel):
        raise ImageDataError(f"tfds:{name} is not an image-classification dataset: its "
                             f"supervised keys {info.supervised_keys} are not (Image, ClassLabel)")
    return image_key, label_key


def dataset_from_tfds(name, data_dir=None, *, image_size=None,
                      test_fraction=DEFAULT_TEST_FRACTION, seed=0,
                      max_examples=DEFAULT_MAX_EXAMPLES,
                      allow_horizontal_flip=True) -> ImageDataset:
    """A TFDS image-classification dataset that is already prepared on disk.

    Nothing is downloaded: the builder is only read (``tfds build NAME`` on a
    machine with internet prepares it; copy its data directory here).  The
    ``train`` split is the training data; ``test`` is the test split when the
    dataset has one, else ``test_fraction`` of each class is held out with
    ``seed`` (``source`` says so).  Class names come from the ``ClassLabel``
    feature.

    Args:
      name: TFDS name, optionally with config/version (``"mnist"``,
        ``"cifar10:3.0.2"``).
      data_dir: TFDS data directory; None = TFDS's default
        (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
      image_size, max_examples, allow_horizontal_flip: as
        :func:`dataset_from_tf_data`.
      test_fraction, seed: the hold-out used when there is no ``test`` split.

    Raises:
      ImageDataError: unknown or unprepared dataset (one line saying where it
        looked and how to prepare it), not an image-classification dataset, no
        ``train`` split, or the rules of :func:`dataset_from_tf_data`.
    """
    if not isinstance(name, str) or not name:
        raise ImageDataError(f"TFDS dataset name must be a non-empty string, got {name!r}")
    data_dir = None if data_dir is None else os.fspath(data_dir)
    try:
        import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise ImageDataError(f"tfds:{name} needs tensorflow-datasets: pip install "
                             "tensorflow-datasets") from None
    hint = (f"prepare it on a machine with internet (`tfds build {name}"
            f"{f' --data_dir={data_dir}' if data_dir else ''}`) and copy the data directory here")
    try:
        with _quiet_absl():   # TFDS warns about unprepared folders; the error below says it
            builder = tfds.builder(name, data_dir=data_dir, try_gcs=False)
            prepared = builder.is_prepared()
    except Exception as error:  # pylint: disable=broad-except
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ImageDataError(f"tfds:{name} is not available under data_dir "
                             f"{data_dir or '<TFDS default>'} ({reason}); {hint}") from None
    if not prepared:
        raise ImageDataError(f"tfds:{name} is not prepared: nothing at {builder.data_dir} "
                             f"(nothing is downloaded); {hint}")
    image_key, label_key = _tfds_features(builder.info, name)
    splits = builder.info.splits
    if "train" not in splits:
        raise ImageDataError(f"tfds:{name} has no 'train' split (splits: {sorted(splits)})")

    def read(split):
        ds = builder.as_dataset(split=split, shuffle_files=False)
        return ds.map(lambda ex: (ex[image_key], ex[label_key]))

    test = read("test") if "test" in splits else None
    return _from_tf(read("train"), test, name=name, source=f"tfds:{builder.data_dir}",
                    class_names=tuple(builder.info.features[label_key].names),
                    image_size=image_size, max_examples=max_examples, float_range=(0.0, 1.0),
                    allow_horizontal_flip=allow_horizontal_flip, test_fraction=test_fraction,
                    seed=seed)
