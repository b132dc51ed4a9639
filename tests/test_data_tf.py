"""Tests for the data_tf package (datasets, splits, tf.data pipelines)."""

import gzip
import os
import pickle
import struct
import sys
import tarfile
import types

import numpy as np
import pytest
import tensorflow as tf

from data_tf import (
    SUPPORTED_IMAGE_DATASETS,
    AugmentConfig,
    DatasetNotFoundError,
    ImageDataset,
    load_image_dataset,
    make_image_pipeline,
    split_in_halves,
    take_subset,
    train_validation_split,
)
from data_tf import image_datasets

REAL_FMNIST_DIR = "/usr/share/datasets/fashion-mnist"


# ---------------------------------------------------------------------------
# Fixture writers in the real on-disk formats
# ---------------------------------------------------------------------------

CIFAR_TRAIN_PER_BATCH = 2
CIFAR_TEST = 3


def _cifar_batch(num, label_offset, rng, marker=False):
    data = rng.integers(0, 256, size=(num, 3072), dtype=np.uint8)
    if marker:
        # Image 0: black except a pure red pixel at (row 3, col 5) and a pure
        # green pixel at (row 30, col 1).  Rows are R plane, G plane, B plane,
        # each 32x32 in row-major order.
        data[0] = 0
        data[0, 0 * 1024 + 3 * 32 + 5] = 255
        data[0, 1 * 1024 + 30 * 32 + 1] = 255
    labels = [int((label_offset + i) % 10) for i in range(num)]
    return {
        b"batch_label": b"fixture batch",
        b"labels": labels,
        b"data": data,
        b"filenames": [b"img_%d.png" % i for i in range(num)],
    }


def write_cifar_dir(directory):
    """Write a tiny but format-exact cifar-10-batches-py directory."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(123)
    batches = {}
    for i in range(1, 6):
        batches[f"data_batch_{i}"] = _cifar_batch(
            CIFAR_TRAIN_PER_BATCH, label_offset=i, rng=rng, marker=(i == 1))
    batches["test_batch"] = _cifar_batch(CIFAR_TEST, label_offset=7, rng=rng)
    batches["batches.meta"] = {
        b"num_cases_per_batch": CIFAR_TRAIN_PER_BATCH,
        b"label_names": [n.encode() for n in image_datasets.CIFAR10_CLASS_NAMES],
        b"num_vis": 3072,
    }
    for name, obj in batches.items():
        with open(os.path.join(directory, name), "wb") as fh:
            pickle.dump(obj, fh, protocol=2)
    return batches


def write_idx(path, array, magic):
    array = np.asarray(array, dtype=np.uint8)
    payload = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    payload += array.tobytes()
    if path.endswith(".gz"):
        with gzip.open(path, "wb") as fh:
            fh.write(payload)
    else:
        with open(path, "wb") as fh:
            fh.write(payload)


def write_fmnist_dir(directory, gz):
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(7)
    arrays = {
        "train_images": rng.integers(0, 256, size=(6, 5, 4), dtype=np.uint8),
        "train_labels": np.array([0, 1, 2, 3, 4, 9], dtype=np.uint8),
        "test_images": rng.integers(0, 256, size=(2, 5, 4), dtype=np.uint8),
        "test_labels": np.array([8, 7], dtype=np.uint8),
    }
    ext = ".gz" if gz else ""
    for key, stem in image_datasets._FMNIST_FILES.items():
        magic = 2051 if key.endswith("images") else 2049
        write_idx(os.path.join(directory, stem + ext), arrays[key], magic)
    return arrays


@pytest.fixture
def no_system_data(tmp_path, monkeypatch):
    """Point every system-wide location at empty directories."""
    debian = tmp_path / "empty_debian"
    keras_cache = tmp_path / "empty_keras"
    debian.mkdir()
    keras_cache.mkdir()
    monkeypatch.setattr(image_datasets, "DEBIAN_FASHION_MNIST_DIR", str(debian))
    monkeypatch.setattr(image_datasets, "KERAS_DATASETS_DIR", str(keras_cache))
    monkeypatch.setattr(image_datasets, "DEFAULT_TFDS_DATA_DIR", str(tmp_path / "empty_tfds"))
    return types.SimpleNamespace(debian=str(debian), keras=str(keras_cache))


# ---------------------------------------------------------------------------
# CIFAR-10
# ---------------------------------------------------------------------------


def _check_cifar(ds, batches):
    assert isinstance(ds, ImageDataset)
    assert ds.name == "cifar10"
    assert ds.train_images.shape == (5 * CIFAR_TRAIN_PER_BATCH, 32, 32, 3)
    assert ds.test_images.shape == (CIFAR_TEST, 32, 32, 3)
    assert ds.train_images.dtype == np.uint8 and ds.train_labels.dtype == np.int64
    assert ds.image_shape == (32, 32, 3)
    first = ds.train_images[0]
    np.testing.assert_array_equal(first[3, 5], [255, 0, 0])
    np.testing.assert_array_equal(first[30, 1], [0, 255, 0])
    assert int(first.sum()) == 2 * 255
    expected_train = np.concatenate([batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)])
    np.testing.assert_array_equal(ds.train_labels, expected_train)
    np.testing.assert_array_equal(ds.test_labels, batches["test_batch"][b"labels"])
    # A random test image round-trips through the channel-major layout.
    raw = batches["test_batch"][b"data"][1].reshape(3, 32, 32).transpose(1, 2, 0)
    np.testing.assert_array_equal(ds.test_images[1], raw)
    assert ds.num_classes == 10
    assert ds.class_names[0] == "airplane" and ds.class_names[9] == "truck"
    assert ds.allow_horizontal_flip is True
    expected_mean = ds.train_images.reshape(-1, 3).mean(axis=0) / 255.0
    expected_std = (ds.train_images.reshape(-1, 3) / 255.0).std(axis=0)
    np.testing.assert_allclose(ds.mean, expected_mean, rtol=1e-9)
    np.testing.assert_allclose(ds.std, expected_std, rtol=1e-9)


def test_cifar10_from_directory(tmp_path, no_system_data):
    batches = write_cifar_dir(str(tmp_path / "cifar-10-batches-py"))
    ds = load_image_dataset("cifar10", data_dir=str(tmp_path))
    _check_cifar(ds, batches)
    assert ds.source == str(tmp_path / "cifar-10-batches-py")
    # The batches directory itself is accepted as data_dir too.
    ds2 = load_image_dataset("cifar10", data_dir=str(tmp_path / "cifar-10-batches-py"))
    np.testing.assert_array_equal(ds2.train_images, ds.train_images)


def test_cifar10_from_tarball(tmp_path, no_system_data):
    src = tmp_path / "build" / "cifar-10-batches-py"
    batches = write_cifar_dir(str(src))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    tar_path = data_dir / "cifar-10-python.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(str(src), arcname="cifar-10-batches-py")
    ds = load_image_dataset("cifar10", data_dir=str(data_dir))
    _check_cifar(ds, batches)
    assert ds.source == str(tar_path)
    assert not (data_dir / "cifar-10-batches-py").exists()  # nothing extracted


def test_cifar10_via_prepared_tfds(tmp_path, no_system_data, monkeypatch):
    """A prepared TFDS builder is used through as_dataset + as_numpy."""
    images = np.zeros((4, 32, 32, 3), np.uint8)
    images[2, 1, 2] = [10, 20, 30]
    calls = []

    class FakeBuilder:
        def __init__(self, name, data_dir):
            self._data_dir_root = data_dir
            self.data_dir = os.path.join(data_dir, name, "3.0.2")
            self.info = types.SimpleNamespace(
                features={"label": types.SimpleNamespace(names=["a%d" % i for i in range(10)])})

        def is_prepared(self):
            return True

        def as_dataset(self, split, batch_size, shuffle_files):
            calls.append((split, batch_size))
            return {"image": tf.constant(images), "label": tf.constant([0, 1, 2, 3], tf.int64)}

    fake = types.SimpleNamespace(
        builder=lambda name, data_dir=None: FakeBuilder(name, data_dir),
        as_numpy=lambda d: {k: v.numpy() for k, v in d.items()},
    )
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    empty = tmp_path / "empty"
    (empty / "cifar10" / "3.0.2").mkdir(parents=True)   # what a prepared TFDS dir holds
    ds = load_image_dataset("cifar10", data_dir=str(empty))
    assert ds.source == f"tfds:{empty}"
    assert ds.train_images.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(ds.train_images[2, 1, 2], [10, 20, 30])
    assert ds.class_names[3] == "a3"
    assert sorted(calls) == [("test", -1), ("train", -1)]


@pytest.mark.parametrize("kind", ["missing", "file", "empty"])
def test_explicit_data_dir_is_used_or_refused_in_one_line(tmp_path, kind):
    path = tmp_path / "data"
    if kind == "file":
        path.write_bytes(b"\0")
    elif kind == "empty":
        path.mkdir()
    for name in ("cifar10", "fashion_mnist"):
        with pytest.raises(DatasetNotFoundError) as info:
            load_image_dataset(name, data_dir=str(path))
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ValueError, match="digits"):
        load_image_dataset("digits", data_dir=str(tmp_path))


def test_cifar10_missing_lists_locations(tmp_path, no_system_data):
    empty = tmp_path / "nothing_here"
    (empty / "unrelated").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError) as info:
        load_image_dataset("cifar10", data_dir=str(empty))
    msg = str(info.value)
    assert "cifar10" in msg
    assert str(empty) in msg
    assert os.path.join(str(empty), "cifar-10-batches-py") in msg
    assert os.path.join(str(empty), "cifar-10-python.tar.gz") in msg
    assert f"{no_system_data.keras} (" not in msg   # an explicit data_dir: no fallback looked at
    assert "TFDS" in msg and "tfds build cifar10" in msg
    assert "data_batch_1" in msg and "batches.meta" in msg
    assert isinstance(info.value, FileNotFoundError)


# ---------------------------------------------------------------------------
# Fashion-MNIST (IDX)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_idx_fixture(tmp_path, no_system_data, gz):
    arrays = write_fmnist_dir(str(tmp_path), gz=gz)
    ds = load_image_dataset("fashion_mnist", data_dir=str(tmp_path))
    assert ds.source == str(tmp_path)
    assert ds.train_images.shape == (6, 5, 4, 1)
    assert ds.test_images.shape == (2, 5, 4, 1)
    np.testing.assert_array_equal(ds.train_images[..., 0], arrays["train_images"])
    np.testing.assert_array_equal(ds.test_images[..., 0], arrays["test_images"])
    np.testing.assert_array_equal(ds.train_labels, arrays["train_labels"])
    np.testing.assert_array_equal(ds.test_labels, arrays["test_labels"])
    assert ds.train_labels.dtype == np.int64
    assert ds.class_names == (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
    assert ds.num_classes == 10
    assert ds.allow_horizontal_flip is True
    assert ds.mean == pytest.approx((arrays["train_images"].mean() / 255.0,))
    assert ds.std == pytest.approx(((arrays["train_images"] / 255.0).std(),))


@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_corrupt_idx_names_file(tmp_path, no_system_data, gz):
    write_fmnist_dir(str(tmp_path), gz=gz)
    path = os.path.join(str(tmp_path), "train-images-idx3-ubyte" + (".gz" if gz else ""))
    with open(path, "rb") as fh:
        raw = fh.read()
    with open(path, "wb") as fh:
        fh.write(raw[: len(raw) - 7])  # truncated
    with pytest.raises(ValueError, match="train-images-idx3-ubyte"):
        load_image_dataset("fashion_mnist", data_dir=str(tmp_path))


def test_idx_wrong_magic_names_file(tmp_path, no_system_data):
    write_fmnist_dir(str(tmp_path), gz=False)
    # Swap a label file in place of an image file: magic 2049 != 2051.
    labels = np.array([1, 2], np.uint8)
    write_idx(os.path.join(str(tmp_path), "t10k-images-idx3-ubyte"), labels, 2049)
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.*2049"):
        load_image_dataset("fashion_mnist", data_dir=str(tmp_path))


def test_fashion_mnist_missing_lists_locations(tmp_path, no_system_data):
    empty = tmp_path / "user_dir"
    (empty / "unrelated").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError) as info:
        load_image_dataset("fashion_mnist", data_dir=str(empty))
    msg = str(info.value)
    assert "fashion_mnist" in msg
    assert str(empty) in msg
    assert f"{no_system_data.debian} (" not in msg   # an explicit data_dir: no fallback
    assert f"{no_system_data.keras} (" not in msg
    assert f"TFDS 'fashion_mnist' data_dir {empty}" in msg
    assert "dataset-fashion-mnist" in msg
    assert "train-images-idx3-ubyte" in msg and "t10k-labels-idx1-ubyte" in msg
    assert "tfds build fashion_mnist" in msg


@pytest.mark.skipif(not os.path.isdir(REAL_FMNIST_DIR),
                    reason=f"Debian package dataset-fashion-mnist not installed "
                           f"({REAL_FMNIST_DIR} absent)")
def test_real_debian_fashion_mnist():
    ds = load_image_dataset("fashion_mnist")
    assert ds.source == REAL_FMNIST_DIR
    assert ds.train_images.shape == (60000, 28, 28, 1)
    assert ds.test_images.shape == (10000, 28, 28, 1)
    assert ds.image_shape == (28, 28, 1)
    assert ds.train_images.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(ds.train_labels), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(ds.test_labels), [1000] * 10)
    assert ds.mean[0] == pytest.approx(0.2860, abs=1e-3)
    assert ds.std[0] == pytest.approx(0.3530, abs=1e-3)


# ---------------------------------------------------------------------------
# digits / names
# ---------------------------------------------------------------------------


def test_digits():
    pytest.importorskip("sklearn", reason="scikit-learn not installed")
    ds = load_image_dataset("digits")
    assert ds.source == "sklearn"
    assert ds.image_shape == (8, 8, 1)
    assert len(ds.train_images) + len(ds.test_images) == 1797
    assert len(ds.test_images) == round(1797 * 0.2)
    assert ds.train_images.dtype == np.uint8
    assert ds.train_images.max() == 255 and ds.train_images.min() == 0
    assert ds.allow_horizontal_flip is False
    assert ds.num_classes == 10 and set(np.unique(ds.test_labels)) == set(range(10))
    again = load_image_dataset("digits")
    np.testing.assert_array_equal(again.test_images, ds.test_images)
    np.testing.assert_array_equal(again.test_labels, ds.test_labels)


def test_unknown_dataset_name():
    with pytest.raises(ValueError) as info:
        load_image_dataset("imagenet")
    msg = str(info.value)
    assert "imagenet" in msg
    for name in SUPPORTED_IMAGE_DATASETS:
        assert name in msg


# ---------------------------------------------------------------------------
# splits
# ---------------------------------------------------------------------------


def test_train_validation_split():
    train, val = train_validation_split(101, 0.2, seed=3)
    assert len(val) == 20 and len(train) == 81
    assert not set(train) & set(val)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(101))
    train2, val2 = train_validation_split(101, 0.2, seed=3)
    np.testing.assert_array_equal(train, train2)
    np.testing.assert_array_equal(val, val2)
    _, val3 = train_validation_split(101, 0.2, seed=4)
    assert not np.array_equal(val, val3)
    tiny_train, tiny_val = train_validation_split(2, 0.01, seed=0)
    assert len(tiny_train) == 1 and len(tiny_val) == 1
    tiny_train, tiny_val = train_validation_split(3, 0.99, seed=0)
    assert len(tiny_train) == 1 and len(tiny_val) == 2


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_train_validation_split_bad_fraction(fraction):
    with pytest.raises(ValueError, match="validation_fraction"):
        train_validation_split(10, fraction, seed=0)


def test_split_in_halves():
    a, b = split_in_halves(11, seed=1)
    assert len(a) == 5 and len(b) == 6
    assert not set(a) & set(b)
    np.testing.assert_array_equal(np.sort(np.concatenate([a, b])), np.arange(11))
    a2, b2 = split_in_halves(11, seed=1)
    np.testing.assert_array_equal(a, a2)
    np.testing.assert_array_equal(b, b2)


def test_take_subset_balanced_and_deterministic():
    labels = np.repeat(np.arange(10), 20)
    images = np.arange(200)[:, None] * np.ones((1, 3), np.int64)
    sub_x, sub_y = take_subset(images, labels, 50, seed=0)
    np.testing.assert_array_equal(np.bincount(sub_y, minlength=10), [5] * 10)
    np.testing.assert_array_equal(labels[sub_x[:, 0]], sub_y)  # pairs kept together
    assert len(np.unique(sub_x[:, 0])) == 50
    again_x, again_y = take_subset(images, labels, 50, seed=0)
    np.testing.assert_array_equal(sub_x, again_x)
    np.testing.assert_array_equal(sub_y, again_y)
    other_x, _ = take_subset(images, labels, 50, seed=1)
    assert not np.array_equal(sub_x, other_x)
    # Uneven: a class with too few examples gives its share to the others.
    labels = np.array([0] * 50 + [1] * 30 + [2] * 5)
    _, y = take_subset(np.arange(85), labels, 30, seed=2)
    counts = np.bincount(y, minlength=3)
    assert counts[2] == 5 and sorted(counts[:2]) == [12, 13]


def test_take_subset_edge_cases():
    labels = np.repeat(np.arange(4), 3)
    images = np.arange(12)
    x, y = take_subset(images, labels, None, seed=0)
    assert x is images and y is labels
    x, y = take_subset(images, labels, 12, seed=0)
    assert x is images
    x, y = take_subset(images, labels, 100, seed=0)
    assert x is images
    with pytest.raises(ValueError):
        take_subset(images, labels, 3, seed=0)  # fewer than 4 classes
    with pytest.raises(ValueError):
        take_subset(images, labels, 0, seed=0)


def test_a_train_size_above_the_data_is_said_in_one_line(capsys):
    """Every image input builder uses all images when train_size asks for
    more, and prints so (imagenet_inputs and voc_inputs print the same note)."""
    pytest.importorskip("sklearn", reason="scikit-learn not installed")
    from data_tf.search_inputs import make_search_inputs
    from data_tf.splits import train_size_note
    from data_tf.train_inputs import make_train_inputs

    ds = load_image_dataset("digits")
    available = len(ds.train_labels)
    said = (f"train_size=5000 is more than the {available} training images of digits: all "
            f"{available} are used.")
    for make in (make_search_inputs, make_train_inputs):
        inputs = make(ds, batch_size=32, train_size=5000, seed=0)
        assert capsys.readouterr().out.splitlines() == [said]
        assert sum(inputs.sizes().values()) - inputs.sizes().get("test", 0) == available
        for size in (None, available, 100):
            make(ds, batch_size=32, train_size=size, seed=0)
            assert capsys.readouterr().out == ""
    assert train_size_note(9, 8, "VOC train in /voc") == (
        "train_size=9 is more than the 8 training images of VOC train in /voc: all 8 are used.")
    assert train_size_note(8, 8, "x") is None and train_size_note(None, 8, "x") is None


# ---------------------------------------------------------------------------
# pipelines
# ---------------------------------------------------------------------------

NO_AUG = AugmentConfig(random_crop_padding=0, horizontal_flip=False, cutout_size=0)


def _collect(ds):
    xs, ys = [], []
    for x, y in ds:
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def _toy(n=12, h=8, w=8, c=3, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, h, w, c), dtype=np.uint8)
    labels = np.arange(n)  # label == example index, to observe the order
    return images, labels


def _normalise(images, mean, std):
    return (images.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(
        std, np.float32)


def test_pipeline_eval_normalisation_shapes_dtypes():
    images, labels = _toy(n=10, c=3)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    ds = make_image_pipeline(images, labels, batch_size=4, training=False, mean=mean, std=std)
    batches = list(ds)
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    x, y = batches[0]
    assert x.dtype == tf.float32 and y.dtype == tf.int32
    assert tuple(x.shape[1:]) == (8, 8, 3)
    all_x, all_y = _collect(ds)
    np.testing.assert_array_equal(all_y, labels)  # no shuffle
    np.testing.assert_allclose(all_x, _normalise(images, mean, std), rtol=1e-5, atol=1e-5)
    # An explicit augmentation config is ignored when not training.
    ds_aug = make_image_pipeline(images, labels, batch_size=4, training=False, mean=mean,
                                 std=std, augment=AugmentConfig(4, True, 4))
    aug_x, _ = _collect(ds_aug)
    np.testing.assert_array_equal(aug_x, all_x)
    dropped = make_image_pipeline(images, labels, batch_size=4, training=False, mean=mean,
                                  std=std, drop_remainder=True)
    assert [b[0].shape[0] for b in dropped] == [4, 4]


def test_pipeline_grayscale_and_bad_batch_size():
    images, labels = _toy(n=5, h=6, w=7, c=1)
    x, _ = _collect(make_image_pipeline(images, labels, batch_size=2, training=True,
                                        mean=(0.3,), std=(0.2,), seed=1))
    assert x.shape == (5, 6, 7, 1)
    for bad in (0, -3):
        with pytest.raises(ValueError, match="batch_size"):
            make_image_pipeline(images, labels, batch_size=bad, training=True,
                                mean=(0.3,), std=(0.2,))


def test_pipeline_determinism_and_epoch_order():
    images, labels = _toy(n=24)
    kwargs = dict(batch_size=5, training=True, mean=(0.5,) * 3, std=(0.25,) * 3,
                  augment=AugmentConfig(random_crop_padding=2, horizontal_flip=True,
                                        cutout_size=3))
    x1, y1 = _collect(make_image_pipeline(images, labels, seed=7, epoch=3, **kwargs))
    x2, y2 = _collect(make_image_pipeline(images, labels, seed=7, epoch=3, **kwargs))
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(x1, x2)
    assert sorted(y1) == list(range(24))
    assert not np.array_equal(y1, labels)  # shuffled
    _, y_next = _collect(make_image_pipeline(images, labels, seed=7, epoch=4, **kwargs))
    assert not np.array_equal(y1, y_next)
    _, y_seed = _collect(make_image_pipeline(images, labels, seed=8, epoch=3, **kwargs))
    assert not np.array_equal(y1, y_seed)
    # No augmentation: pure permutation of the normalised images.
    x3, y3 = _collect(make_image_pipeline(images, labels, seed=7, epoch=3,
                                          **{**kwargs, "augment": NO_AUG}))
    np.testing.assert_array_equal(y3, y1)
    np.testing.assert_allclose(x3, _normalise(images[y3], kwargs["mean"], kwargs["std"]),
                               rtol=1e-5, atol=1e-5)


def test_pipeline_flip_only():
    images, labels = _toy(n=32, h=6, w=6, c=3, seed=1)
    x, y = _collect(make_image_pipeline(
        images, labels, batch_size=8, training=True, mean=(0.0,) * 3, std=(1.0,) * 3,
        augment=AugmentConfig(random_crop_padding=0, horizontal_flip=True)))
    flipped = 0
    for out, idx in zip(x, y):
        orig = images[idx].astype(np.float32) / 255.0
        if np.allclose(out, orig[:, ::-1]):
            flipped += 1
        else:
            np.testing.assert_allclose(out, orig, atol=1e-6)
    assert 0 < flipped < 32


def test_pipeline_random_crop_only():
    images, labels = _toy(n=16, h=8, w=8, c=1, seed=2)
    pad = 2
    x, y = _collect(make_image_pipeline(
        images, labels, batch_size=4, training=True, mean=(0.0,), std=(1.0,),
        augment=AugmentConfig(random_crop_padding=pad, horizontal_flip=False)))
    shifts = []
    for out, idx in zip(x, y):
        padded = np.pad(images[idx].astype(np.float32) / 255.0,
                        [(pad, pad), (pad, pad), (0, 0)])
        matches = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                   if np.allclose(padded[dy:dy + 8, dx:dx + 8], out, atol=1e-6)]
        assert matches, "output is not a crop of the padded image"
        shifts.append(matches[0])
    assert any(s != (pad, pad) for s in shifts)  # pixels actually moved
    assert len(set(shifts)) > 1


def test_pipeline_cutout_zeroes_square_after_normalisation():
    n, size, cut = 20, 12, 4
    images = np.full((n, size, size, 3), 200, np.uint8)
    labels = np.arange(n)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.5, 0.5)
    x, _ = _collect(make_image_pipeline(
        images, labels, batch_size=5, training=True, mean=mean, std=std,
        augment=AugmentConfig(random_crop_padding=0, horizontal_flip=False, cutout_size=cut)))
    base = _normalise(images[:1], mean, std)[0]
    full_squares = 0
    for out in x:
        zero = np.all(out == 0.0, axis=-1)
        np.testing.assert_array_equal(zero, np.any(out == 0.0, axis=-1))  # all channels
        np.testing.assert_allclose(out[~zero], base[~zero], rtol=1e-6)
        rows = np.flatnonzero(zero.any(axis=1))
        cols = np.flatnonzero(zero.any(axis=0))
        assert len(rows) > 0, "cutout did not zero anything"
        # A filled axis-aligned rectangle of contiguous rows/cols, side <= cut.
        assert zero.sum() == len(rows) * len(cols)
        assert rows[-1] - rows[0] + 1 == len(rows) and cols[-1] - cols[0] + 1 == len(cols)
        assert len(rows) <= cut and len(cols) <= cut
        full_squares += (len(rows) == cut and len(cols) == cut)
    assert full_squares > 0


@pytest.mark.parametrize("training", [True, False])
def test_pipeline_sharding_disjoint_union(training):
    images, labels = _toy(n=23, h=4, w=4, c=1)
    seen = []
    for k in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=k,
                                         num_replicas_in_sync=2)
        ds = make_image_pipeline(images, labels, batch_size=6, training=training,
                                 mean=(0.5,), std=(0.5,), seed=5, epoch=1, input_context=ctx)
        sizes = [int(b[1].shape[0]) for b in ds]
        assert max(sizes) == 3  # per-replica batch size
        _, y = _collect(ds)
        seen.append(set(y.tolist()))
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(range(23))
