"""Loading raw image-classification datasets as numpy arrays.

Nothing here ever downloads: every dataset is read from files that are already
on disk (a user directory, a system-wide Debian dataset package, the Keras
download cache, a prepared TensorFlow-Datasets directory) or, for ``digits``,
from the copy bundled with scikit-learn.  When nothing usable is found a
:class:`DatasetNotFoundError` lists every place that was inspected and how to
provide the data.

All loaders return an :class:`ImageDataset` holding ``uint8`` images of shape
``[N, H, W, C]`` (grayscale datasets keep a channel axis of size 1) and
``int64`` labels of shape ``[N]``.  Datasets of the user's own images
(``data_tf.own_images``: a class-folder tree, numpy arrays, a ``tf.data``
dataset, a prepared TFDS dataset) may also hold ``float32`` images on the
[0, 1] scale and may have no test split.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import pickle
import tarfile
import zlib
from typing import Callable

import numpy as np

__all__ = [
    "SUPPORTED_IMAGE_DATASETS",
    "DatasetNotFoundError",
    "ImageDataset",
    "load_image_dataset",
    "read_idx_file",
    "DEBIAN_FASHION_MNIST_DIR",
    "KERAS_DATASETS_DIR",
    "DEFAULT_TFDS_DATA_DIR",
    "OWN_FOLDER_DATASET",
    "TFDS_PREFIX",
    "dataset_name_error",
]

SUPPORTED_IMAGE_DATASETS = ("cifar10", "fashion_mnist", "digits")

# The user's own images (data_tf.own_images): a class-folder tree in data_dir,
# or any prepared TFDS image-classification dataset ("tfds:<name>").
OWN_FOLDER_DATASET = "folder"
TFDS_PREFIX = "tfds:"

# Location used by Debian's ``dataset-fashion-mnist`` package.  Module level so
# that tests (and unusual installations) can point it elsewhere.
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

# Where ``keras.datasets.*.load_data()`` caches its downloads.  Only read from.
KERAS_DATASETS_DIR = os.path.join(
    os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras")),
    "datasets",
)

# TFDS data directory used when ``load_image_dataset`` gets no ``data_dir``.
# ``None`` means TFDS's own default (``$TFDS_DATA_DIR`` or ~/tensorflow_datasets).
DEFAULT_TFDS_DATA_DIR: str | None = None

CIFAR10_CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
FASHION_MNIST_CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
DIGITS_CLASS_NAMES = tuple(str(d) for d in range(10))

_CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_FILE = "test_batch"
_CIFAR_META_FILE = "batches.meta"
_CIFAR_DIRNAME = "cifar-10-batches-py"
_CIFAR_TARBALL = "cifar-10-python.tar.gz"

_FMNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049

# dtypes an ImageDataset may hold: uint8 on 0..255, float32 on [0, 1].
IMAGE_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32))

_DIGITS_SPLIT_SEED = 0
_DIGITS_TEST_FRACTION = 0.2


class DatasetNotFoundError(FileNotFoundError):
    """Raised when a dataset is not available anywhere on local disk.

    The message names the dataset, every location that was inspected, and how
    to make the data available (no download is ever attempted).
    """


@dataclasses.dataclass(frozen=True, eq=False)
class ImageDataset:
    """An in-memory image-classification dataset.

    Attributes:
      name: dataset name (one of ``SUPPORTED_IMAGE_DATASETS``, or the name of
        a user's own dataset, see ``data_tf.own_images``).
      train_images, test_images: arrays ``[N, H, W, C]``, either ``uint8``
        (0..255) or ``float32`` on the [0, 1] scale.  ``test_images`` and
        ``test_labels`` are both None when the dataset has no test split
        (searches never read it; ``has_test`` tells).
      train_labels, test_labels: ``int64`` arrays ``[N]``.
      num_classes: number of classes.
      class_names: tuple of human-readable class names.
      source: where the data came from (a path, ``"tfds:<data_dir>"`` or
        ``"sklearn"``).
      allow_horizontal_flip: whether mirroring images preserves their label.
      mean, std: per-channel mean / standard deviation of the *training*
        images on the [0, 1] scale, computed from the data.

    Equality and hashing are by identity (the fields hold numpy arrays).
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    class_names: tuple
    source: str
    allow_horizontal_flip: bool
    mean: tuple
    std: tuple

    def __post_init__(self):
        if (self.test_images is None) != (self.test_labels is None):
            raise ValueError(f"{self.name}: test_images and test_labels must both be given "
                             "or both be None")
        for split in ("train", "test"):
            images = getattr(self, f"{split}_images")
            labels = getattr(self, f"{split}_labels")
            if images is None:
                continue
            if images.ndim != 4 or images.dtype not in IMAGE_DTYPES:
                raise ValueError(
                    f"{self.name}: {split}_images must be uint8 or float32 [N,H,W,C], got "
                    f"{images.dtype} {images.shape}")
            if labels.shape != (images.shape[0],):
                raise ValueError(
                    f"{self.name}: {split}_labels shape {labels.shape} does not "
                    f"match {images.shape[0]} images")
        if self.has_test and self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise ValueError(
                f"{self.name}: train/test image shapes differ: "
                f"{self.train_images.shape[1:]} vs {self.test_images.shape[1:]}")

    @property
    def has_test(self) -> bool:
        """Whether the dataset has a test split."""
        return self.test_images is not None

    @property
    def image_shape(self) -> tuple:
        """``(H, W, C)`` of one image."""
        return tuple(int(d) for d in self.train_images.shape[1:])


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def channel_mean_std(images: np.ndarray) -> tuple[tuple, tuple]:
    """Per-channel mean and (population) std of images on the [0,1] scale.

    ``uint8`` images (0..255) use a 256-bin histogram per channel, which is
    exact and avoids creating a float copy of the whole array; ``float32``
    images (already on [0, 1]) are summed in float64 per channel.
    """
    images = np.asarray(images)
    if images.dtype == np.float32:
        return _float_mean_std(images)
    if images.dtype != np.uint8:
        raise ValueError(f"expected uint8 or float32 images, got {images.dtype}")
    values = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(images.shape[-1]):
        hist = np.bincount(images[..., c].ravel(), minlength=256).astype(np.float64)
        total = hist.sum()
        if total == 0:
            raise ValueError("cannot compute statistics of an empty image array")
        mean = float((hist * values).sum() / total)
        var = float((hist * (values - mean) ** 2).sum() / total)
        means.append(mean)
        stds.append(float(np.sqrt(var)))
    return tuple(means), tuple(stds)


def _float_mean_std(images: np.ndarray) -> tuple[tuple, tuple]:
    if images.size == 0:
        raise ValueError("cannot compute statistics of an empty image array")
    flat = images.reshape(-1, images.shape[-1])
    means, stds = [], []
    for c in range(flat.shape[-1]):
        channel = flat[:, c].astype(np.float64)
        mean = float(channel.mean())
        means.append(mean)
        stds.append(float(np.sqrt(np.mean((channel - mean) ** 2))))
    return tuple(means), tuple(stds)


def _make_dataset(name, train_images, train_labels, test_images, test_labels,
                  class_names, source, allow_horizontal_flip) -> ImageDataset:
    train_images = np.ascontiguousarray(train_images, dtype=np.uint8)
    test_images = np.ascontiguousarray(test_images, dtype=np.uint8)
    if train_images.ndim == 3:
        train_images = train_images[..., None]
    if test_images.ndim == 3:
        test_images = test_images[..., None]
    mean, std = channel_mean_std(train_images)
    return ImageDataset(
        name=name,
        train_images=train_images,
        train_labels=np.asarray(train_labels, dtype=np.int64).reshape(-1),
        test_images=test_images,
        test_labels=np.asarray(test_labels, dtype=np.int64).reshape(-1),
        num_classes=len(class_names),
        class_names=tuple(str(c) for c in class_names),
        source=str(source),
        allow_horizontal_flip=bool(allow_horizontal_flip),
        mean=mean,
        std=std,
    )


def _dedupe(paths):
    seen, out = set(), []
    for p in paths:
        key = os.path.abspath(p)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


# --------------------------------------------------------------------------
# TFDS (only if already prepared on disk)
# --------------------------------------------------------------------------


def _try_tfds(tfds_name: str, data_dir: str | None, looked: list):
    """Return ``(train_x, train_y, test_x, test_y, class_names, source)`` or None.

    Appends a description of what was checked to ``looked``.
    """
    tfds_dir = data_dir if data_dir is not None else DEFAULT_TFDS_DATA_DIR
    try:
        import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    except ImportError:
        looked.append(f"TFDS '{tfds_name}': tensorflow-datasets is not installed")
        return None
    try:
        builder = tfds.builder(tfds_name, data_dir=tfds_dir)
        root = getattr(builder, "_data_dir_root", None) or tfds_dir or "<TFDS default>"
        prepared = builder.is_prepared()
    except Exception as exc:  # pylint: disable=broad-except
        looked.append(f"TFDS '{tfds_name}' (data_dir={tfds_dir!r}): builder failed: {exc}")
        return None
    if not prepared:
        looked.append(
            f"TFDS '{tfds_name}' data_dir {root} (not prepared: nothing at {builder.data_dir})")
        return None
    arrays = {}
    for split in ("train", "test"):
        ds = builder.as_dataset(split=split, batch_size=-1, shuffle_files=False)
        batch = tfds.as_numpy(ds)
        arrays[split] = (np.asarray(batch["image"]), np.asarray(batch["label"]))
    try:
        class_names = tuple(builder.info.features["label"].names)
    except Exception:  # pylint: disable=broad-except
        class_names = None
    return (*arrays["train"], *arrays["test"], class_names, f"tfds:{root}")


def _tfds_hint(tfds_name: str, data_dir: str | None) -> str:
    tfds_dir = data_dir if data_dir is not None else DEFAULT_TFDS_DATA_DIR
    where = f" --data_dir={tfds_dir}" if tfds_dir else ""
    return (f"prepare it with TensorFlow Datasets on a machine with internet access: "
            f"`tfds build {tfds_name}{where}` (then copy the data directory here)")


def _not_found(name: str, looked: list, hints: list) -> DatasetNotFoundError:
    lines = [f"Dataset '{name}' was not found on local disk (nothing is downloaded).",
             "Looked in:"]
    lines += [f"  - {entry}" for entry in looked]
    lines.append("To provide it, do one of:")
    lines += [f"  * {hint}" for hint in hints]
    return DatasetNotFoundError("\n".join(lines))


# --------------------------------------------------------------------------
# CIFAR-10
# --------------------------------------------------------------------------


def _unpickle_cifar(raw: bytes, origin: str) -> dict:
    try:
        obj = pickle.loads(raw, encoding="bytes")
    except Exception as exc:  # pylint: disable=broad-except
        raise ValueError(f"{origin}: not a readable CIFAR-10 pickle ({exc})") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{origin}: expected a pickled dict, got {type(obj).__name__}")
    # Accept both bytes keys (official files) and str keys.
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _cifar_batch_arrays(raw: bytes, origin: str):
    batch = _unpickle_cifar(raw, origin)
    if "data" not in batch or "labels" not in batch:
        raise ValueError(f"{origin}: CIFAR-10 batch lacks 'data'/'labels' entries")
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch["labels"], dtype=np.int64).reshape(-1)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{origin}: expected data uint8 [N,3072] and N labels, got data "
            f"{data.shape} and {labels.shape[0]} labels")
    # Rows are channel-major: 1024 red, 1024 green, 1024 blue values, each
    # plane in row-major order.  Convert to HWC.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels


def _cifar_meta_names(raw: bytes, origin: str):
    meta = _unpickle_cifar(raw, origin)
    names = meta.get("label_names")
    if not names:
        return CIFAR10_CLASS_NAMES
    return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)


def _assemble_cifar(read: Callable[[str], bytes | None], origin: str):
    train = [_cifar_batch_arrays(read(f), f"{origin}/{f}") for f in _CIFAR_TRAIN_FILES]
    test_x, test_y = _cifar_batch_arrays(read(_CIFAR_TEST_FILE), f"{origin}/{_CIFAR_TEST_FILE}")
    meta_raw = read(_CIFAR_META_FILE)
    names = (_cifar_meta_names(meta_raw, f"{origin}/{_CIFAR_META_FILE}")
             if meta_raw is not None else CIFAR10_CLASS_NAMES)
    train_x = np.concatenate([x for x, _ in train])
    train_y = np.concatenate([y for _, y in train])
    return train_x, train_y, test_x, test_y, names


def _cifar_from_dir(directory: str):
    required = _CIFAR_TRAIN_FILES + (_CIFAR_TEST_FILE,)
    missing = [f for f in required if not os.path.isfile(os.path.join(directory, f))]
    if missing:
        return None, missing

    def read(fname):
        path = os.path.join(directory, fname)
        if not os.path.isfile(path):
            return None
        with open(path, "rb") as fh:
            return fh.read()

    return _assemble_cifar(read, directory), []


def _cifar_from_tarball(path: str):
    try:
        tar = tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: not a readable tar archive ({exc})") from exc
    with tar:
        members = {}
        for member in tar.getmembers():
            if member.isfile():
                members.setdefault(os.path.basename(member.name), member)
        required = _CIFAR_TRAIN_FILES + (_CIFAR_TEST_FILE,)
        missing = [f for f in required if f not in members]
        if missing:
            raise ValueError(f"{path}: archive lacks CIFAR-10 file(s) {missing}")

        def read(fname):
            member = members.get(fname)
            if member is None:
                return None
            try:
                return tar.extractfile(member).read()
            except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
                raise ValueError(f"{path}: cannot read member {member.name} ({exc})") from exc

        return _assemble_cifar(read, path)


def _load_cifar10(data_dir: str | None) -> ImageDataset:
    looked, partial = [], []
    # An explicit data_dir is used or refused; the Keras cache only without one.
    roots = [data_dir] if data_dir is not None else [KERAS_DATASETS_DIR]
    dirs, tarballs = [], []
    for root in roots:
        dirs += [root, os.path.join(root, _CIFAR_DIRNAME)]
        tarballs.append(os.path.join(root, _CIFAR_TARBALL))
    dirs, tarballs = _dedupe(dirs), _dedupe(tarballs)

    for directory in dirs:
        if not os.path.isdir(directory):
            looked.append(f"{directory} (no such directory)")
            continue
        arrays, missing = _cifar_from_dir(directory)
        if arrays is not None:
            return _make_dataset("cifar10", *arrays[:4], arrays[4], directory, True)
        if len(missing) < len(_CIFAR_TRAIN_FILES) + 1:
            partial.append(directory)
        looked.append(f"{directory} (missing {', '.join(missing)})")
    for tarball in tarballs:
        if os.path.isfile(tarball):
            arrays = _cifar_from_tarball(tarball)
            return _make_dataset("cifar10", *arrays[:4], arrays[4], tarball, True)
        looked.append(f"{tarball} (no such file)")

    found = _try_tfds("cifar10", data_dir, looked)
    if found is not None:
        tx, ty, vx, vy, names, source = found
        return _make_dataset("cifar10", tx, ty, vx, vy, names or CIFAR10_CLASS_NAMES,
                             source, True)

    hints = [
        "pass data_dir=<dir> where <dir> (or <dir>/cifar-10-batches-py) holds the "
        "CIFAR-10 python batches: " + ", ".join(_CIFAR_TRAIN_FILES + (_CIFAR_TEST_FILE,
                                                                      _CIFAR_META_FILE)),
        f"or put the official archive {_CIFAR_TARBALL} in data_dir or in {KERAS_DATASETS_DIR}",
        _tfds_hint("cifar10", data_dir),
    ]
    if partial:
        hints.insert(0, f"complete the partial copy in {', '.join(partial)}")
    raise _not_found("cifar10", looked, hints)


# --------------------------------------------------------------------------
# IDX / Fashion-MNIST
# --------------------------------------------------------------------------


def read_idx_file(path: str, expected_magic: int | None = None) -> np.ndarray:
    """Read an unsigned-byte IDX file (optionally gzip-compressed) into numpy.

    The header is two zero bytes, a type code (0x08 = uint8), the number of
    dimensions, then one big-endian uint32 per dimension.  ``expected_magic``
    (2051 for image files, 2049 for label files) is checked when given.

    Raises:
      ValueError: naming ``path`` if the file is truncated, corrupt, or not of
        the expected kind.
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        if raw[:2] == b"\x1f\x8b" or path.endswith(".gz"):
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path}: cannot decompress/read IDX file ({exc})") from exc
    if len(raw) < 4:
        raise ValueError(f"{path}: truncated IDX file ({len(raw)} bytes, no header)")
    magic = int.from_bytes(raw[:4], "big")
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic number {magic})")
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(
            f"{path}: IDX magic number is {magic}, expected {expected_magic}")
    ndim = raw[3]
    header_len = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header_len:
        raise ValueError(f"{path}: truncated or invalid IDX header")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims, dtype=np.int64))
    available = len(raw) - header_len
    if available != expected:
        raise ValueError(
            f"{path}: IDX payload has {available} bytes but dimensions {dims} need "
            f"{expected} (file truncated or corrupt)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims)


def _find_idx(directory: str, stem: str):
    for candidate in (stem, stem + ".gz"):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    return None


def _fmnist_from_dir(directory: str):
    paths = {key: _find_idx(directory, stem) for key, stem in _FMNIST_FILES.items()}
    missing = [_FMNIST_FILES[k] + "[.gz]" for k, p in paths.items() if p is None]
    if missing:
        return None, missing
    arrays = {}
    for key, path in paths.items():
        is_images = key.endswith("images")
        arr = read_idx_file(path, _IDX_IMAGES_MAGIC if is_images else _IDX_LABELS_MAGIC)
        if is_images and arr.ndim != 3:
            raise ValueError(f"{path}: expected 3-D image data, got shape {arr.shape}")
        if not is_images and arr.ndim != 1:
            raise ValueError(f"{path}: expected 1-D label data, got shape {arr.shape}")
        arrays[key] = arr
    for split in ("train", "test"):
        n_img = arrays[f"{split}_images"].shape[0]
        n_lab = arrays[f"{split}_labels"].shape[0]
        if n_img != n_lab:
            raise ValueError(
                f"{directory}: {split} split has {n_img} images but {n_lab} labels "
                f"({paths[f'{split}_images']}, {paths[f'{split}_labels']})")
    return (arrays["train_images"], arrays["train_labels"],
            arrays["test_images"], arrays["test_labels"]), []


def _load_fashion_mnist(data_dir: str | None) -> ImageDataset:
    looked = []
    dirs = []
    if data_dir is not None:   # given explicitly: used or refused, no fallback
        dirs += [data_dir, os.path.join(data_dir, "fashion-mnist")]
    else:
        dirs.append(DEBIAN_FASHION_MNIST_DIR)
        dirs.append(os.path.join(KERAS_DATASETS_DIR, "fashion-mnist"))
    for directory in _dedupe(dirs):
        if not os.path.isdir(directory):
            looked.append(f"{directory} (no such directory)")
            continue
        arrays, missing = _fmnist_from_dir(directory)
        if arrays is not None:
            return _make_dataset("fashion_mnist", *arrays, FASHION_MNIST_CLASS_NAMES,
                                 directory, True)
        looked.append(f"{directory} (missing {', '.join(missing)})")

    found = _try_tfds("fashion_mnist", data_dir, looked)
    if found is not None:
        tx, ty, vx, vy, names, source = found
        return _make_dataset("fashion_mnist", tx, ty, vx, vy,
                             names or FASHION_MNIST_CLASS_NAMES, source, True)

    hints = [
        "install the Debian package `dataset-fashion-mnist` "
        f"(`apt-get install dataset-fashion-mnist`, files go to {DEBIAN_FASHION_MNIST_DIR})",
        "or pass data_dir=<dir> holding the IDX files "
        + ", ".join(_FMNIST_FILES.values()) + " (each optionally .gz)",
        _tfds_hint("fashion_mnist", data_dir),
    ]
    raise _not_found("fashion_mnist", looked, hints)


# --------------------------------------------------------------------------
# scikit-learn digits
# --------------------------------------------------------------------------


def _load_digits() -> ImageDataset:
    try:
        from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise ImportError(
            "The 'digits' dataset is bundled with scikit-learn, which is not "
            "installed: run `pip install scikit-learn`.") from exc
    bunch = load_digits()
    # Pixel values are integers 0..16; map them linearly onto 0..255.
    images = np.rint(np.asarray(bunch.images, dtype=np.float64) * (255.0 / 16.0))
    images = np.clip(images, 0, 255).astype(np.uint8)[..., None]
    labels = np.asarray(bunch.target, dtype=np.int64)
    perm = np.random.default_rng(_DIGITS_SPLIT_SEED).permutation(len(labels))
    n_test = int(round(len(labels) * _DIGITS_TEST_FRACTION))
    train_idx = np.sort(perm[:-n_test])
    test_idx = np.sort(perm[-n_test:])
    return _make_dataset("digits", images[train_idx], labels[train_idx],
                         images[test_idx], labels[test_idx], DIGITS_CLASS_NAMES,
                         "sklearn", False)


# --------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------


def _check_data_dir(name: str, data_dir: str) -> str:
    """An explicitly given data_dir must be a non-empty directory (one-line errors)."""
    if name == "digits":
        raise ValueError(f"--data_dir={data_dir} given, but 'digits' is bundled with "
                         "scikit-learn and reads no directory; drop --data_dir.")
    if not os.path.exists(data_dir):
        raise DatasetNotFoundError(f"--data_dir={data_dir} does not exist, so {name} cannot be "
                                   "read from it (an explicit data_dir is used, never replaced "
                                   "by a system copy).")
    if not os.path.isdir(data_dir):
        raise DatasetNotFoundError(f"--data_dir={data_dir} is a file, not a directory holding "
                                   f"{name}.")
    if not os.listdir(data_dir):
        raise DatasetNotFoundError(f"--data_dir={data_dir} is empty: put {name} there in its "
                                   "standard format (see README 'Datasets'), or drop "
                                   "--data_dir to use a system copy.")
    return data_dir


def dataset_name_error(name) -> str | None:
    """Why ``name`` is not a dataset ``load_image_dataset`` reads (None: it is)."""
    if isinstance(name, str) and (name in SUPPORTED_IMAGE_DATASETS or name == OWN_FOLDER_DATASET
                                  or (name.startswith(TFDS_PREFIX) and name[len(TFDS_PREFIX):]
                                      and not any(c.isspace() for c in name))):
        return None
    return (f"unknown image dataset {name!r}; allowed: {', '.join(SUPPORTED_IMAGE_DATASETS)}, "
            f"{OWN_FOLDER_DATASET} (a class-folder tree in data_dir) or {TFDS_PREFIX}<name> "
            "(a prepared TFDS image-classification dataset)")


def _load_own(name: str, data_dir, image_size) -> ImageDataset:
    from data_tf import own_images  # pylint: disable=import-outside-toplevel
    if name == OWN_FOLDER_DATASET:
        if data_dir is None:
            raise own_images.ImageDataError(
                "--dataset=folder needs --data_dir=<dir> holding one sub-folder of images per "
                "class (see docs/datasets.md)")
        if not os.path.isdir(data_dir):
            raise own_images.ImageDataError(
                f"--data_dir={data_dir} is not a directory; --dataset=folder reads a "
                "class-folder tree (<dir>/<class>/<image>)")
        return own_images.dataset_from_folder(data_dir, image_size=image_size)
    return own_images.dataset_from_tfds(name[len(TFDS_PREFIX):], data_dir,
                                        image_size=image_size)


def load_image_dataset(name: str, data_dir: str | None = None, *,
                       image_size: int | None = None) -> ImageDataset:
    """Load one of ``SUPPORTED_IMAGE_DATASETS``, or the user's own images, from local disk.

    Sources are tried in order (the first complete one wins):

    * ``cifar10``: CIFAR-10 python batches in ``data_dir`` or
      ``data_dir/cifar-10-batches-py`` (then the Keras cache
      ``~/.keras/datasets``), a ``cifar-10-python.tar.gz`` in those
      directories, then a *prepared* TFDS ``cifar10`` under ``data_dir`` (or
      the TFDS default data dir when ``data_dir`` is None).
    * ``fashion_mnist``: the four IDX files (optionally ``.gz``) in
      ``data_dir`` or ``data_dir/fashion-mnist``, then
      ``DEBIAN_FASHION_MNIST_DIR``, then the Keras cache, then a prepared TFDS
      ``fashion_mnist``.
    * ``digits``: scikit-learn's bundled 8x8 digits (``data_dir`` is ignored),
      pixels scaled to 0..255, split with a fixed-seed permutation whose last
      20% is the test set.
    * ``folder``: a class-folder tree in ``data_dir``
      (``data_tf.own_images.dataset_from_folder``).
    * ``tfds:<name>``: a TFDS image-classification dataset already prepared
      under ``data_dir`` (or the TFDS default)
      (``data_tf.own_images.dataset_from_tfds``).

    Args:
      name: dataset name.
      data_dir: optional directory holding the dataset; also used as the
        TFDS ``data_dir``.  When given it is the only place looked at (no
        system copy replaces it); a missing, empty or non-directory path is
        refused with one line.
      image_size: ``folder`` and ``tfds:<name>`` only: resize every image to
        this square size (None: keep the common size of the images).

    Returns:
      An :class:`ImageDataset`.

    Raises:
      ValueError: unknown ``name``, or a dataset file that exists but is
        corrupt (the message names the file).
      DatasetNotFoundError: no source was found; the message lists every path
        inspected and how to provide the data.
      ImportError: ``digits`` requested without scikit-learn installed.
    """
    error = dataset_name_error(name)
    if error:
        raise ValueError(error[0].upper() + error[1:])
    if name not in SUPPORTED_IMAGE_DATASETS:
        return _load_own(name, None if data_dir is None else os.fspath(data_dir), image_size)
    if image_size is not None:
        raise ValueError(f"image_size={image_size} applies to --dataset=folder and "
                         f"tfds:<name> only; {name} keeps its own size")
    if data_dir is not None:
        data_dir = _check_data_dir(name, os.fspath(data_dir))
    if name == "cifar10":
        return _load_cifar10(data_dir)
    if name == "fashion_mnist":
        return _load_fashion_mnist(data_dir)
    return _load_digits()
