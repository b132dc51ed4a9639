"""Tests for data_tf.imagenet on a tiny synthetic class-folder tree."""

import os
import re

import numpy as np
import pytest
import tensorflow as tf

from data_tf.image_datasets import DatasetNotFoundError
from data_tf.imagenet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageFolderSplit,
    find_image_folder,
    imagenet_file_order,
    load_imagenet_folders,
    load_tfds_imagenet,
    make_imagenet_pipeline,
    make_tfds_imagenet_pipeline,
)

SIZE = 32
SOLID = (200, 100, 50)
# Created in unsorted order on purpose: labels must follow sorted names.
CLASSES = ("n03_zebra", "n01_cat", "n02_dog")
SORTED = tuple(sorted(CLASSES))


def _write(path, array, fmt="jpeg"):
    array = tf.constant(array, tf.uint8)
    data = tf.io.encode_png(array) if fmt == "png" else tf.io.encode_jpeg(array, quality=95)
    tf.io.write_file(path, data)


def _noise(rng, h, w, c=3):
    return rng.integers(0, 256, size=(h, w, c), dtype=np.uint8)


def _make_tree(root, split, per_class, rng):
    sizes = [(16, 24), (40, 32), (64, 48), (20, 20)]
    for c, name in enumerate(CLASSES):
        d = os.path.join(root, split, name)
        os.makedirs(d)
        for i in range(per_class):
            h, w = sizes[(i + c) % len(sizes)]
            fname = os.path.join(d, f"img_{i}.JPEG" if i % 2 else f"img_{i}.jpg")
            if name == "n01_cat" and i == 0:
                _write(os.path.join(d, "a_solid.JPEG"),
                       np.broadcast_to(np.array(SOLID, np.uint8), (48, 40, 3)))
                continue
            if name == "n02_dog" and i == 1:
                _write(fname, _noise(rng, h, w, 1))            # grayscale JPEG
                continue
            if name == "n03_zebra" and i == 2:
                _write(os.path.join(d, f"img_{i}.PNG"), _noise(rng, h, w), "png")
                continue
            _write(fname, _noise(rng, h, w))
        # Ignored entries.
        with open(os.path.join(d, "notes.txt"), "w") as f:
            f.write("not an image")
        with open(os.path.join(d, "._img_0.JPEG"), "wb") as f:
            f.write(b"\x00AppleDouble")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("imagenet"))
    rng = np.random.default_rng(0)
    _make_tree(root, "train", 4, rng)
    _make_tree(root, "val", 2, rng)
    return root


@pytest.fixture(scope="module")
def splits(tree):
    return load_imagenet_folders(tree)


def _collect(ds):
    xs, ys = [], []
    for x, y in ds:
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def test_find_image_folder_layout(tree):
    split = find_image_folder(tree, "train")
    assert isinstance(split, ImageFolderSplit)
    assert split.class_names == SORTED
    assert split.root == os.path.join(tree, "train")
    assert len(split.files) == 12 and split.labels.dtype == np.int64
    np.testing.assert_array_equal(split.labels, np.repeat([0, 1, 2], 4))
    for path, label in zip(split.files, split.labels):
        assert os.path.isabs(path)
        assert os.path.basename(os.path.dirname(path)) == SORTED[label]
        assert not os.path.basename(path).startswith(".") and not path.endswith(".txt")
    assert split.files == tuple(sorted(split.files))
    assert any(p.endswith(".PNG") for p in split.files)
    assert find_image_folder(tree, "train").files == split.files


def test_load_imagenet_folders(splits):
    train, val = splits
    assert train.class_names == val.class_names == SORTED
    assert len(val.files) == 6
    np.testing.assert_array_equal(val.labels, np.repeat([0, 1, 2], 2))


def test_eval_pipeline_shapes_normalisation(splits):
    train, _ = splits
    ds = make_imagenet_pipeline(train, batch_size=5, training=False, image_size=SIZE)
    batches = list(ds)
    assert [int(b[0].shape[0]) for b in batches] == [5, 5, 2]
    x, y = batches[0]
    assert x.dtype == tf.float32 and x.shape[1:] == (SIZE, SIZE, 3) and y.dtype == tf.int32
    xs, ys = _collect(ds)
    np.testing.assert_array_equal(ys, train.labels)
    # Solid image: every pixel is (c/255 - mean) / std, within JPEG tolerance.
    solid_idx = [i for i, p in enumerate(train.files) if p.endswith("a_solid.JPEG")][0]
    expected = (np.array(SOLID) / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(xs[solid_idx], np.broadcast_to(expected, (SIZE, SIZE, 3)),
                               atol=0.05)
    # Grayscale JPEG decodes to 3 equal channels.
    gray_idx = train.files.index(os.path.join(train.root, "n02_dog", "img_1.JPEG"))
    raw = xs[gray_idx] * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)
    np.testing.assert_allclose(raw[..., 0], raw[..., 1], atol=1e-5)
    np.testing.assert_allclose(raw[..., 0], raw[..., 2], atol=1e-5)
    assert np.all(np.isfinite(xs))
    # Eval is deterministic and independent of seed/epoch.
    xs2, _ = _collect(make_imagenet_pipeline(train, batch_size=12, training=False,
                                             image_size=SIZE, seed=3, epoch=7))
    np.testing.assert_array_equal(xs, xs2)


def test_training_determinism_and_epochs(splits):
    train, _ = splits
    kw = dict(batch_size=4, training=True, image_size=SIZE, seed=1)
    a_x, a_y = _collect(make_imagenet_pipeline(train, epoch=0, **kw))
    b_x, b_y = _collect(make_imagenet_pipeline(train, epoch=0, **kw))
    np.testing.assert_array_equal(a_x, b_x)
    np.testing.assert_array_equal(a_y, b_y)
    assert a_x.shape == (12, SIZE, SIZE, 3)

    order0 = imagenet_file_order(12, training=True, seed=1, epoch=0)
    order1 = imagenet_file_order(12, training=True, seed=1, epoch=1)
    assert sorted(order0) == list(range(12)) and not np.array_equal(order0, order1)
    np.testing.assert_array_equal(a_y, train.labels[order0])
    c_x, c_y = _collect(make_imagenet_pipeline(train, epoch=1, **kw))
    np.testing.assert_array_equal(c_y, train.labels[order1])
    # Same file, different epoch -> different augmentation.
    pos0 = {int(i): k for k, i in enumerate(order0)}
    pos1 = {int(i): k for k, i in enumerate(order1)}
    diffs = [np.abs(a_x[pos0[i]] - c_x[pos1[i]]).max() for i in range(12)]
    assert max(diffs) > 0.1

    # Training crops differ from the eval preprocessing of the same file.
    e_x, _ = _collect(make_imagenet_pipeline(train, batch_size=12, training=False,
                                             image_size=SIZE))
    train_vs_eval = [np.abs(a_x[pos0[i]] - e_x[i]).mean() for i in range(12)]
    assert sum(d > 1e-3 for d in train_vs_eval) >= 10
    # Colour jitter is off by default and changes the output when on.
    j_x, _ = _collect(make_imagenet_pipeline(train, epoch=0, color_jitter=0.4, **kw))
    assert np.abs(j_x - a_x).max() > 1e-3


def test_take_and_drop_remainder(splits):
    train, _ = splits
    ds = make_imagenet_pipeline(train, batch_size=2, training=True, image_size=SIZE,
                                take=5, seed=2)
    x, y = _collect(ds)
    assert x.shape[0] == 5
    np.testing.assert_array_equal(
        y, train.labels[imagenet_file_order(12, training=True, seed=2, take=5)])
    ds = make_imagenet_pipeline(train, batch_size=2, training=True, image_size=SIZE,
                                take=5, seed=2, drop_remainder=True)
    assert sum(int(b[0].shape[0]) for b in ds) == 4


def test_sharding_with_input_context(splits):
    train, _ = splits
    seen, full = [], _collect(make_imagenet_pipeline(train, batch_size=12, training=False,
                                                     image_size=SIZE))[0]
    for k in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=k,
                                         num_replicas_in_sync=2)
        order = imagenet_file_order(12, training=True, seed=5, epoch=3, input_context=ctx)
        ds = make_imagenet_pipeline(train, batch_size=4, training=True, image_size=SIZE,
                                    seed=5, epoch=3, input_context=ctx)
        sizes = [int(b[0].shape[0]) for b in ds]
        assert sizes == [2, 2, 2]                       # per-replica batch size
        _, y = _collect(ds)
        np.testing.assert_array_equal(y, train.labels[order])
        # Eval sharding: outputs are exactly the matching rows of the full pass.
        ev_order = imagenet_file_order(12, training=False, input_context=ctx)
        ev_x, _ = _collect(make_imagenet_pipeline(train, batch_size=4, training=False,
                                                  image_size=SIZE, input_context=ctx))
        np.testing.assert_array_equal(ev_x, full[ev_order])
        seen.append(set(order.tolist()))
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(range(12))


def test_tfds_pipeline_uses_same_preprocessing(splits):
    train, _ = splits
    encoded = [tf.io.read_file(p).numpy() for p in train.files]
    ds = tf.data.Dataset.from_tensor_slices(
        {"image": tf.constant(encoded), "label": tf.constant(train.labels)})
    f_x, f_y = _collect(make_imagenet_pipeline(train, batch_size=12, training=False,
                                               image_size=SIZE))
    t_x, t_y = _collect(make_tfds_imagenet_pipeline(ds, batch_size=5, training=False,
                                                    image_size=SIZE))
    np.testing.assert_array_equal(f_y, t_y)
    np.testing.assert_allclose(f_x, t_x, atol=1e-6)
    # Already-decoded uint8 images (TFDS default decoding) give the same result.
    decoded = ds.map(lambda ex: {"image": tf.io.decode_image(ex["image"], channels=3,
                                                             expand_animations=False),
                                 "label": ex["label"]})
    d_x, _ = _collect(make_tfds_imagenet_pipeline(decoded, batch_size=5, training=False,
                                                  image_size=SIZE))
    np.testing.assert_allclose(f_x, d_x, atol=1e-6)
    # Training: deterministic per (seed, epoch), and the same crop as the folder
    # pipeline for the same (seed, epoch, index).
    kw = dict(batch_size=4, training=True, image_size=SIZE, seed=4, epoch=1)
    a_x, a_y = _collect(make_tfds_imagenet_pipeline(ds, **kw))
    b_x, b_y = _collect(make_tfds_imagenet_pipeline(ds, **kw))
    np.testing.assert_array_equal(a_x, b_x)
    np.testing.assert_array_equal(a_y, b_y)
    assert sorted(a_y.tolist()) == sorted(train.labels.tolist())
    shards = []
    for k in range(2):
        ctx = tf.distribute.InputContext(2, k, 2)
        _, y = _collect(make_tfds_imagenet_pipeline(ds, input_context=ctx, **kw))
        shards.append(y)
    np.testing.assert_array_equal(np.sort(np.concatenate(shards)), np.sort(a_y))


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


def test_missing_root_and_split(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DatasetNotFoundError, match=re.escape(str(missing))) as info:
        find_image_folder(str(missing), "train")
    assert "<root>/train/<class_name>" in str(info.value)
    with pytest.raises(DatasetNotFoundError, match=re.escape(str(tmp_path / "val"))):
        find_image_folder(str(tmp_path), "val")
    with pytest.raises(ValueError, match="split"):
        find_image_folder(str(tmp_path), "test")


def test_no_class_folders(tmp_path):
    (tmp_path / "val").mkdir()
    _write(str(tmp_path / "val" / "x.JPEG"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DatasetNotFoundError, match="no class folders") as info:
        find_image_folder(str(tmp_path), "val")
    assert str(tmp_path / "val") in str(info.value)
    assert "1 image files directly" in str(info.value)


def test_empty_class_folder(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "train" / "b").mkdir()
    _write(str(tmp_path / "train" / "a" / "x.jpg"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "train" / "b" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "train" / "b"))):
        find_image_folder(str(tmp_path), "train")


def test_class_mismatch(tmp_path):
    for split, names in (("train", ("a", "b", "c")), ("val", ("a", "b", "d"))):
        for n in names:
            (tmp_path / split / n).mkdir(parents=True)
            _write(str(tmp_path / split / n / "x.jpg"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="differ") as info:
        load_imagenet_folders(str(tmp_path))
    msg = str(info.value)
    assert "c" in msg.split("missing from")[1] and "d" in msg.split("not in")[1]
    assert str(tmp_path / "val") in msg


def test_tfds_not_prepared(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=re.escape(str(tmp_path))) as info:
        load_tfds_imagenet(str(tmp_path))
    msg = str(info.value)
    assert "tfds build imagenet2012 --manual_dir=" in msg
    assert "--data_dir" in msg and "class folders" in msg


def test_bad_arguments(splits):
    train, _ = splits
    with pytest.raises(ValueError, match="batch_size"):
        make_imagenet_pipeline(train, batch_size=0, training=True)
    with pytest.raises(ValueError, match="take"):
        make_imagenet_pipeline(train, batch_size=2, training=True, take=0)
    with pytest.raises(ValueError, match="seed"):
        make_imagenet_pipeline(train, batch_size=2, training=True, seed=-1)
    with pytest.raises(ValueError, match="image_size"):
        make_imagenet_pipeline(train, batch_size=2, training=True, image_size=0)


def test_imagenet_inputs_from_class_folders(tree):
    from data_tf.imagenet_inputs import make_imagenet_inputs

    inputs = make_imagenet_inputs(tree, batch_size=4, image_size=SIZE, seed=3, train_size=8)
    assert inputs.num_classes == 3 and inputs.num_train == 8 and inputs.steps_per_epoch == 2
    assert inputs.source == f"class folders {tree}"
    x, y = _collect(inputs.train(epoch=1))
    assert x.shape == (8, SIZE, SIZE, 3) and y.shape == (8,)
    np.testing.assert_array_equal(_collect(inputs.train(epoch=1))[0], x)   # same epoch, same data
    xv, yv = _collect(inputs.valid())
    np.testing.assert_array_equal(yv, np.repeat([0, 1, 2], 2))
    with pytest.raises(ValueError, match="12 training images but batch_size=16"):
        make_imagenet_inputs(tree, batch_size=16, image_size=SIZE)


def test_an_eval_size_above_the_validation_images_is_said_in_one_line(tree, capsys):
    """As train_size's note (data_tf.splits.size_note): all images are used."""
    from data_tf.imagenet_inputs import make_imagenet_inputs

    inputs = make_imagenet_inputs(tree, batch_size=4, image_size=SIZE, eval_size=100)
    assert capsys.readouterr().out.splitlines() == [
        f"eval_size=100 is more than the 6 validation images of class folders {tree}: all 6 "
        "are used."]
    assert len(_collect(inputs.valid())[1]) == 6
    for size in (None, 6, 2):
        make_imagenet_inputs(tree, batch_size=4, image_size=SIZE, eval_size=size)
        assert capsys.readouterr().out == ""


def test_imagenet_inputs_without_train_folder_look_for_tfds(tmp_path):
    from data_tf.imagenet_inputs import make_imagenet_inputs

    with pytest.raises(DatasetNotFoundError, match="class folders"):
        make_imagenet_inputs(str(tmp_path), batch_size=4)
