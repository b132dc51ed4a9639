"""Searching on one's own images: class-folder trees (real JPEG/PNG files),
numpy arrays, tf.data datasets and prepared TFDS datasets become an
ImageDataset (data_tf/own_images.py); bad input gives one line; the search and
training CLIs run end to end on a folder (--dataset=folder)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from data_tf.image_datasets import load_image_dataset
from data_tf.image_pipelines import AugmentConfig, make_image_pipeline
from data_tf.own_images import (ImageDataError, dataset_from_arrays, dataset_from_folder,
                                dataset_from_tf_data, dataset_from_tfds)
from data_tf.search_inputs import make_search_inputs
from data_tf.train_inputs import make_train_inputs

Image = pytest.importorskip("PIL.Image")
tfds = pytest.importorskip("tensorflow_datasets")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write(path, pixels):
    """pixels uint8 [H, W] (grayscale, mode L) or [H, W, 3] (RGB), saved in the
    format of the file's extension."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = Image.fromarray(pixels, "L" if pixels.ndim == 2 else "RGB")
    if path.endswith(".jpg"):
        image.save(path, format="JPEG", quality=95)
    else:
        image.save(path, format="PNG")


def _mixed_tree(root, per_class=5):
    """Three classes (created out of order); each file one flat colour, sizes
    9x11 .. 20x26, odd files grayscale PNG, even files RGB JPEG.
    Returns {(class, file index): expected RGB colour}."""
    colours = {}
    for k, name in enumerate(["owls", "cats", "dogs"]):
        for i in range(per_class):
            h, w = 9 + 3 * i, 11 + 4 * i
            if i % 2:
                grey = 30 + 40 * k + 5 * i
                _write(os.path.join(root, name, f"{i:02d}.png"),
                       np.full((h, w), grey, np.uint8))
                colours[(name, i)] = (grey, grey, grey)
            else:
                rgb = (200 - 50 * k, 20 * i, 60 + 30 * k)
                _write(os.path.join(root, name, f"{i:02d}.jpg"),
                       np.broadcast_to(np.array(rgb, np.uint8), (h, w, 3)).copy())
                colours[(name, i)] = rgb
    return colours


def test_folder_tree_of_mixed_jpeg_and_png_is_resized_to_rgb_with_a_carved_test_split(tmp_path):
    colours = _mixed_tree(str(tmp_path / "tree"))
    ds = dataset_from_folder(tmp_path / "tree", image_size=16)
    assert ds.class_names == ("cats", "dogs", "owls")        # sorted folder names
    assert ds.num_classes == 3 and ds.name == "tree"
    assert ds.train_images.dtype == np.uint8 and ds.image_shape == (16, 16, 3)
    # 5 images a class, round(20%) = 1 of each held out as the test split.
    assert np.bincount(ds.train_labels).tolist() == [4, 4, 4]
    assert np.bincount(ds.test_labels).tolist() == [1, 1, 1]
    assert "held out as the test split with seed 0" in ds.source
    # Every image is flat: its colour is the file's (gray repeated to RGB),
    # within JPEG's rounding; each file appears once, under its folder's label.
    found = []
    for images, labels in ((ds.train_images, ds.train_labels), (ds.test_images, ds.test_labels)):
        for image, label in zip(images, labels):
            assert np.ptp(image.reshape(-1, 3), axis=0).max() <= 2
            colour = image[0, 0].astype(int)
            matches = [key for key, rgb in colours.items()
                       if np.abs(colour - rgb).max() <= 3]
            assert len(matches) == 1
            assert ds.class_names[label] == matches[0][0]
            found.append(matches[0])
    assert sorted(found) == sorted(colours)
    # Normalisation statistics come from the training split only.
    train = ds.train_images.astype(np.float64) / 255
    np.testing.assert_allclose(ds.mean, train.mean(axis=(0, 1, 2)), rtol=1e-9)
    np.testing.assert_allclose(ds.std, train.std(axis=(0, 1, 2)), rtol=1e-9)
    both = np.concatenate([ds.train_images, ds.test_images]).astype(np.float64) / 255
    assert not np.allclose(ds.mean, both.mean(axis=(0, 1, 2)))
    # The same seed holds out the same files.
    again = dataset_from_folder(tmp_path / "tree", image_size=16)
    np.testing.assert_array_equal(again.test_images, ds.test_images)


def test_grayscale_tree_keeps_one_channel_and_its_common_size(tmp_path):
    for k, name in enumerate(["b", "a"]):
        for i in range(3):
            _write(str(tmp_path / name / f"{i}.png"), np.full((10, 12), 10 * i + k, np.uint8))
    ds = dataset_from_folder(tmp_path)
    assert ds.image_shape == (10, 12, 1)
    assert ds.class_names == ("a", "b")
    # the grey values come through exactly (PNG is lossless)
    assert sorted(int(v) for v in np.concatenate([ds.train_images, ds.test_images])[:, 0, 0, 0]) \
        == [0, 1, 10, 11, 20, 21]


def test_train_and_test_sub_trees_are_used_as_given(tmp_path):
    for split, count in (("train", 3), ("test", 2)):
        for name, value in (("x", 50), ("y", 150)):
            for i in range(count):
                _write(str(tmp_path / split / name / f"{i}.png"),
                       np.full((8, 8, 3), value + i, np.uint8))
    _write(str(tmp_path / "train" / "x" / "nested" / "deep.jpg"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "train" / "y" / "notes.txt").write_text("not an image, skipped")
    ds = dataset_from_folder(tmp_path)
    assert np.bincount(ds.train_labels).tolist() == [4, 3]   # nested files count
    assert np.bincount(ds.test_labels).tolist() == [2, 2]
    assert sorted(ds.test_images[:, 0, 0, 0].tolist()) == [50, 51, 150, 151]
    assert "train/ and test/ sub-trees" in ds.source


def _tree_error(path, **kwargs):
    with pytest.raises(ImageDataError) as info:
        dataset_from_folder(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_folder_errors_are_one_line_naming_the_file_or_value(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _tree_error(empty) == (
        f"{empty} holds no training images: expected one sub-folder per class holding "
        f"jpeg/jpg/png/bmp/gif files ({empty}/<class>/<image>)")
    one = tmp_path / "one"
    _write(str(one / "cats" / "a.png"), np.zeros((8, 8), np.uint8))
    assert _tree_error(one) == (f"{one} has only one class folder ('cats'); classification "
                                "needs at least 2 class sub-folders")
    _write(str(one / "dogs" / "a.png"), np.zeros((8, 8), np.uint8))
    (one / "empty_class").mkdir()
    assert _tree_error(one) == (f"class folder {one / 'empty_class'} holds no "
                                "jpeg/jpg/png/bmp/gif images; remove it or add images")
    (one / "empty_class").rmdir()
    assert _tree_error(one, image_size=4) == (
        "image_size=4 is too small: the network needs images of at least 8x8 "
        "(stem + 2 stride-2 reductions).")
    _write(str(one / "dogs" / "small.png"), np.zeros((7, 9), np.uint8))
    assert _tree_error(one) == (
        f"images differ in size: {one / 'cats' / 'a.png'} is 8x8, {one / 'dogs' / 'small.png'} "
        "is 7x9; pass image_size=N (--image_size=N) to resize every image to N x N")
    os.remove(one / "dogs" / "a.png")
    os.remove(one / "cats" / "a.png")
    _write(str(one / "cats" / "b.png"), np.zeros((7, 9), np.uint8))
    assert _tree_error(one) == (
        f"{one / 'cats' / 'b.png'} is 7x9 but the network needs images of at least 8x8 (stem + "
        "2 stride-2 reductions); pass image_size >= 8 (--image_size) to resize.")
    # A truncated PNG: its header is real, its data cut off.
    good = one / "cats" / "b.png"
    raw = good.read_bytes()
    (one / "cats" / "broken.png").write_bytes(raw[:len(raw) // 2])
    message = _tree_error(one, image_size=8)
    assert message.startswith(f"{one / 'cats' / 'broken.png'}: not a readable "
                              "JPEG/PNG/BMP/GIF image (")
    assert _tree_error(tmp_path / "missing") == (
        f"{tmp_path / 'missing'} is not a directory; expected a class-folder tree "
        f"({tmp_path / 'missing'}/<class>/<image>)")


def _array_error(*args, **kwargs):
    with pytest.raises(ImageDataError) as info:
        dataset_from_arrays(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_uint8_and_float_arrays_give_the_same_normalised_batches():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (24, 9, 10, 3), dtype=np.uint8)
    y = np.arange(24) % 3
    ints = dataset_from_arrays(x, y, class_names=["a", "b", "c"])
    floats = dataset_from_arrays(x.astype(np.float64) / 255, y)
    wide = dataset_from_arrays(x.astype(np.float32), y, float_range=(0, 255))
    assert ints.train_images.dtype == np.uint8 and floats.train_images.dtype == np.float32
    assert ints.test_images is None and not ints.has_test
    assert ints.class_names == ("a", "b", "c") and floats.class_names == ("0", "1", "2")
    np.testing.assert_allclose(floats.train_images, x / 255, atol=1e-7)
    np.testing.assert_allclose(wide.train_images, x / 255, atol=1e-7)
    np.testing.assert_allclose(ints.mean, floats.mean, atol=1e-6)
    np.testing.assert_allclose(ints.std, floats.std, atol=1e-6)
    batches = []
    for ds in (ints, floats):
        pipe = make_image_pipeline(ds.train_images, ds.train_labels, batch_size=24,
                                   training=True, mean=ds.mean, std=ds.std,
                                   augment=AugmentConfig(2, True, 3), seed=1)
        batches.append(next(iter(pipe))[0].numpy())
    np.testing.assert_allclose(batches[0], batches[1], atol=1e-4)
    # Searches carve validation from the training images; no test split is needed.
    inputs = make_search_inputs(floats, batch_size=8, validation_fraction=0.25)
    assert inputs.sizes() == {"train": 18, "arch": 0, "validation": 6}
    train = make_train_inputs(floats, batch_size=8, validation_fraction=0.25)
    assert train.test_set() == {} and train.sizes()["test"] == 0


def test_array_errors_are_one_line():
    x = np.zeros((6, 8, 8, 1), np.uint8)
    y = np.array([0, 1, 0, 1, 0, 1])
    assert _array_error(x, y[:5]) == ("y: 6 images but 5 labels; x and y must have the same "
                                      "length")
    assert _array_error(x, y + 0.5) == ("y label 0.5 at index 0 is not an integer; labels must "
                                        "be integers 0..num_classes-1")
    assert _array_error(x, y * 2, class_names=["a", "b"]) == (
        "y label 2 at index 1 is out of range; allowed: 0..1 (2 classes)")
    assert _array_error(x, y - 1) == ("y label -1 at index 0 is out of range; allowed: "
                                      "integers >= 0")
    assert _array_error(x, np.zeros(6)) == ("arrays has only one class ('0') in its training "
                                            "images; classification needs at least 2 classes")
    assert _array_error(np.zeros((6, 7, 8, 1), np.uint8), y) == (
        "arrays: each image is 7x8 but the network needs images of at least 8x8 (stem + 2 "
        "stride-2 reductions); pass image_size >= 8 (--image_size) to resize.")
    bad = np.full((6, 8, 8, 1), 0.5)
    bad[2, 3, 4, 0] = np.nan
    assert _array_error(bad, y) == ("x holds nan at index (2, 3, 4, 0); float images must be "
                                    "finite (no NaN or inf)")
    assert _array_error(np.full((6, 8, 8, 1), 255.0), y) == (
        "x holds float values in [255, 255] but float images are taken to lie in "
        "float_range=(0, 1) (0..255 floats: pass float_range=(0, 255))")
    assert _array_error(x, np.eye(2)[y]) == (
        "y labels have shape (6, 2); labels must be integer class ids of shape [N] (one-hot "
        "labels: take argmax)")


def test_tf_data_batches_are_unbatched_into_the_same_dataset():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (21, 8, 8, 3), dtype=np.uint8)
    y = rng.permutation(np.arange(21) % 2)
    arrays = dataset_from_arrays(x, y)
    batched = dataset_from_tf_data(tf.data.Dataset.from_tensor_slices((x, y)).batch(5),
                                   test=tf.data.Dataset.from_tensor_slices((x[:4], y[:4])))
    np.testing.assert_array_equal(batched.train_images, arrays.train_images)
    np.testing.assert_array_equal(batched.train_labels, y)
    np.testing.assert_array_equal(batched.test_images, x[:4])
    assert batched.mean == arrays.mean
    dicts = dataset_from_tf_data(tf.data.Dataset.from_tensor_slices({"image": x, "label": y}))
    np.testing.assert_array_equal(dicts.train_images, x)
    with pytest.raises(ImageDataError) as info:
        dataset_from_tf_data(tf.data.Dataset.from_tensor_slices((x, y)), max_examples=20)
    assert str(info.value) == (
        "tf.data training data has more than max_examples=20 examples, too many to hold in "
        "memory here; raise max_examples or pass a smaller dataset (e.g. dataset.take(n))")


class OwnTinyShapes(tfds.core.GeneratorBasedBuilder):
    """A TFDS dataset generated here (no download): 10 flat RGB images of sides
    8..17, value 20*i, label i % 2, a train split only."""
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self, supervised_keys=("image", "label"),
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3)),
                "label": tfds.features.ClassLabel(names=["zeta", "alpha"])}))

    def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(10):
            yield i, {"image": np.full((8 + i, 8 + i, 3), 20 * i, np.uint8), "label": i % 2}


def test_prepared_tfds_dataset_is_read_from_disk_and_split(tmp_path):
    OwnTinyShapes(data_dir=str(tmp_path)).download_and_prepare()
    ds = load_image_dataset("tfds:own_tiny_shapes", str(tmp_path), image_size=8)
    assert ds.class_names == ("zeta", "alpha") and ds.image_shape == (8, 8, 3)
    assert ds.source == (f"tfds:{tmp_path / 'own_tiny_shapes' / '1.0.0'} (no test split: 2 "
                         "images, 20% of each class, held out as the test split with seed 0)")
    values = np.concatenate([ds.train_images, ds.test_images])[:, 0, 0, 0].astype(int)
    labels = np.concatenate([ds.train_labels, ds.test_labels])
    assert sorted(values.tolist()) == list(range(0, 200, 20))
    np.testing.assert_array_equal(labels, (values // 20) % 2)
    assert np.bincount(ds.test_labels).tolist() == [1, 1]
    with pytest.raises(ImageDataError) as info:     # sides 8..17 differ
        dataset_from_tfds("own_tiny_shapes", tmp_path)
    message = str(info.value)    # TFDS stores the examples in its own (fixed) order
    assert message.startswith("images differ in size: own_tiny_shapes training data example 0 is ")
    assert message.endswith("pass image_size=N (--image_size=N) to resize every image to N x N")


def test_tfds_dataset_that_is_not_prepared_is_one_line(tmp_path):
    with pytest.raises(ImageDataError) as info:
        load_image_dataset("tfds:mnist", str(tmp_path))
    message = str(info.value)
    assert message.startswith(f"tfds:mnist is not prepared: nothing at {tmp_path / 'mnist'}")
    assert message.endswith(f"(nothing is downloaded); prepare it on a machine with internet "
                            f"(`tfds build mnist --data_dir={tmp_path}`) and copy the data "
                            "directory here")
    assert "\n" not in message
    with pytest.raises(ImageDataError) as info:
        dataset_from_tfds("no_such_dataset_xyz", tmp_path)
    assert str(info.value).startswith(f"tfds:no_such_dataset_xyz is not available under "
                                      f"data_dir {tmp_path} (")
    assert "\n" not in str(info.value)


def _cli(module, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


TINY = ["--layers=3", "--init_channels=4", "--batch_size=16", "--epochs=1", "--image_size=16"]


def test_search_then_train_on_a_folder_from_the_command_line(tmp_path):
    tree = tmp_path / "tree"
    _mixed_tree(str(tree), per_class=12)
    search = _cli("trainers.search_cifar", "--dataset=folder", f"--data_dir={tree}", *TINY,
                  "--nodes=1", "--primitives=none,max_pool_3x3,skip_connect,sep_conv_3x3",
                  f"--model_dir={tmp_path / 'search'}")
    assert search.returncode == 0, search.stderr[-3000:]
    # 12 images a class, round(2.4) = 2 of each held out as the test split,
    # round(10% of 30) = 3 for validation.
    assert (f"Dataset tree from {tree} (no test/ sub-tree: 6 images, 20% of each class, held "
            "out as the test split with seed 0): {'train': 27, 'arch': 0, 'validation': 3}"
            ) in search.stdout
    genotype = tmp_path / "search" / "genotype.json"
    assert json.loads(genotype.read_text())
    train = _cli("trainers.train_cifar", "--dataset=folder", f"--data_dir={tree}", *TINY,
                 "--cutout=0", f"--genotype={genotype}", f"--model_dir={tmp_path / 'train'}",
                 f"--export_dir={tmp_path / 'train' / 'saved_model'}")
    assert train.returncode == 0, train.stderr[-3000:]
    results = json.loads((tmp_path / "train" / "results.json").read_text())
    assert 0.0 <= results["final"]["test_accuracy"] <= 1.0
    assert (tmp_path / "train" / "saved_model" / "saved_model.pb").is_file()


def test_command_line_refuses_bad_datasets_before_writing(tmp_path):
    run = tmp_path / "run"
    proc = _cli("trainers.search_cifar", "--dataset=imagenet", f"--model_dir={run}")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert ("flag --dataset=imagenet: allowed: cifar10, fashion_mnist, digits, folder or "
            "tfds:<name>") in proc.stderr
    proc = _cli("trainers.search_cifar", "--dataset=folder", f"--model_dir={run}")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "search_cifar: error: --dataset=folder needs --data_dir=<dir> holding one sub-folder "
        "of images per class (see docs/datasets.md)")
    proc = _cli("trainers.train_cifar", "--dataset=tfds:mnist", f"--data_dir={tmp_path}",
                f"--genotype={ROOT}/docs/quickstart/genotype.json", f"--model_dir={run}")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "train_cifar: error: tfds:mnist is not prepared: nothing at")
    assert not run.exists()
