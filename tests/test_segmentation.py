"""Segmentation on PASCAL VOC 2012: mIoU, the VOC on-disk format, DeepLab of the cells,
training, export, and the train_voc trainer on a small devkit written in the real format."""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from data_tf.image_datasets import DatasetNotFoundError
from data_tf.voc import (IGNORE_LABEL, VOCFileError, find_voc_root, load_voc_split,
                         make_voc_pipeline, read_mask, voc_colormap, voc_file_error)
from data_tf.voc_inputs import make_voc_inputs
from data_tf.voc_synthetic import encode_palette_png
from datanas.spaces.darts_cnn.genotype import DARTS_V2, save_genotype
from datanas.spaces.darts_cnn.networks import NetworkImageNet
from datanas.spaces.darts_cnn.segmentation import NetworkDeepLabV3, dilated_cell_plan
from datanas.tasks import SegmentationTask
from datanas.core.model_stats import count_parameters

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def devkit(tmp_path_factory):
    """<parent>/VOCdevkit/VOC2012 with 8 train and 4 val images, written by the
    README's command (`python -m data_tf.voc_synthetic`), which prints the root."""
    parent = tmp_path_factory.mktemp("voc")
    proc = subprocess.run([sys.executable, "-m", "data_tf.voc_synthetic", str(parent),
                           "--train=8", "--val=4"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    root = proc.stdout.strip().splitlines()[-1]
    assert root == os.path.join(str(parent), "VOCdevkit", "VOC2012")
    return str(parent), root


def test_miou_matches_hand_computed_confusion_matrix_with_ignore_pixels():
    task = SegmentationTask(num_classes=3, ignore_label=255, class_names=("bg", "a", "b"))
    labels = np.array([[[0, 0, 1], [1, 255, 2]],
                       [[2, 2, 255], [0, 1, 255]]], np.int32)
    predicted = np.array([[[0, 1, 1], [1, 2, 2]],
                          [[2, 0, 1], [1, 2, 0]]], np.int32)
    logits = tf.one_hot(predicted, 3) * 5.0
    sums = task.eval_sums(tf.constant(labels), logits)
    # Valid (true, predicted) pairs, the 3 ignore pixels left out:
    # image 1: (0,0) (0,1) (1,1) (1,1) (2,2); image 2: (2,2) (2,0) (0,1) (1,2).
    expected = np.array([[1, 2, 0],
                         [0, 2, 1],
                         [1, 0, 2]], np.float64)
    np.testing.assert_array_equal(sums["confusion"].numpy(), expected)
    metrics = task.eval_metrics({"loss": float(sums["loss"]), "confusion": expected}, 2)
    # IoU = TP / (row + column - TP): bg 1/(3+2-1), a 2/(3+4-2), b 2/(3+3-2).
    assert metrics["per_class_iou"] == pytest.approx({"bg": 1 / 4, "a": 2 / 5, "b": 2 / 4})
    assert metrics["miou"] == pytest.approx((1 / 4 + 2 / 5 + 2 / 4) / 3)
    assert metrics["pixel_accuracy"] == pytest.approx(5 / 9)
    assert metrics["loss"] == pytest.approx(float(sums["loss"]) / 2)
    # A class in neither truth nor prediction has no IoU and is left out of the mean.
    absent = task.eval_metrics({"loss": 0.0, "confusion": np.diag([3.0, 1.0, 0.0])}, 1)
    assert absent["per_class_iou"]["b"] is None and absent["miou"] == 1.0

    # The loss ignores the ignore pixels whatever their logits, and is the
    # mean over each image's valid pixels.
    noisy = logits.numpy().copy()
    noisy[labels == IGNORE_LABEL] = np.random.default_rng(0).normal(0, 50, (3, 3))
    loss = task.per_example_loss(tf.constant(labels), tf.constant(noisy)).numpy()
    np.testing.assert_allclose(loss, task.per_example_loss(tf.constant(labels), logits).numpy(),
                               rtol=1e-6)
    log_p = tf.nn.log_softmax(logits).numpy()
    valid = labels != IGNORE_LABEL
    by_hand = [-np.mean(log_p[i][valid[i]][np.arange(valid[i].sum()), labels[i][valid[i]]])
               for i in range(2)]
    np.testing.assert_allclose(loss, by_hand, rtol=1e-5)
    with pytest.raises(ValueError, match="ignore_label"):
        SegmentationTask(num_classes=21, ignore_label=3)


def test_palette_masks_are_read_back_with_stored_indices(devkit, tmp_path):
    indices = np.array([[0, 1, 20, 255], [255, 15, 0, 7], [3, 3, 255, 0]], np.uint8)
    path = tmp_path / "mask.png"
    path.write_bytes(encode_palette_png(indices))
    np.testing.assert_array_equal(read_mask(str(path)), indices)
    # TensorFlow's decoder applies the palette: colours, not the stored indices.
    rgb = tf.io.decode_png(path.read_bytes()).numpy()
    np.testing.assert_array_equal(rgb, voc_colormap()[indices])

    split = load_voc_split(devkit[1], "val")
    assert len(split) == 4 and split.ids[0] == "2007_000008"
    for (image, label), mask_file in zip(make_voc_pipeline(split, batch_size=1, training=False),
                                         split.mask_files):
        stored = read_mask(mask_file)
        assert image.shape[1:3] == stored.shape and label.dtype == tf.int32
        np.testing.assert_array_equal(label.numpy()[0], stored)
        assert IGNORE_LABEL in stored and set(np.unique(stored)) - {0, 255}
    # Training crops: the requested size, class indices and 255 only.
    images, labels = next(iter(make_voc_pipeline(load_voc_split(devkit[1], "train"),
                                                 batch_size=4, training=True, crop_size=49)))
    assert images.shape == (4, 49, 49, 3) and labels.shape == (4, 49, 49)
    assert set(np.unique(labels.numpy())) <= {0, 1, 8, 15, IGNORE_LABEL}


def test_devkit_is_found_below_data_dir_and_bad_files_are_named(devkit, tmp_path):
    parent, root = devkit
    assert find_voc_root(parent) == root
    assert find_voc_root(os.path.dirname(root)) == root
    assert find_voc_root(root) == root
    with pytest.raises(DatasetNotFoundError, match="no VOCdevkit/VOC2012"):
        find_voc_root(str(tmp_path))

    copy = tmp_path / "copy"
    shutil.copytree(os.path.dirname(root), copy / "VOCdevkit")
    voc = copy / "VOCdevkit" / "VOC2012"
    with pytest.raises(DatasetNotFoundError, match="SegmentationClassAug"):
        load_voc_split(str(voc), "train_aug")
    missing = voc / "SegmentationClass" / "2007_000003.png"
    missing.unlink()
    with pytest.raises(DatasetNotFoundError, match=str(missing)):
        load_voc_split(str(voc), "train")
    # A mask saved as RGB colours, and one with a value that is no class, are refused by name.
    rgb = voc / "SegmentationClass" / "2007_000002.png"
    rgb.write_bytes(tf.io.encode_png(voc_colormap()[np.zeros((5, 5), np.uint8)]).numpy())
    with pytest.raises(VOCFileError, match=f"{rgb}.*'RGB'"):
        read_mask(str(rgb))
    bad = voc / "SegmentationClass" / "2007_000001.png"
    bad.write_bytes(encode_palette_png(np.full((5, 5), 42, np.uint8)))
    with pytest.raises(VOCFileError, match=f"{bad}.*42"):
        read_mask(str(bad))
    # Inside a running pipeline the error still names the file, in one line.
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("2007_000001\n")
    with pytest.raises(tf.errors.OpError) as raised:
        next(iter(make_voc_pipeline(load_voc_split(str(voc), "train"), batch_size=1,
                                    training=True, crop_size=17)))
    assert str(bad) in voc_file_error(raised.value)
    # Two devkits at the same depth are ambiguous.
    shutil.copytree(os.path.dirname(root), tmp_path / "other" / "VOCdevkit")
    with pytest.raises(ValueError, match="several VOC2012"):
        find_voc_root(str(tmp_path))


def test_tfds_data_dir_uses_the_extracted_archive(devkit, tmp_path):
    # TFDS's voc/2012 has boxes only; its extracted VOCtrainval archive has the masks.
    tfds_dir = tmp_path / "tensorflow_datasets"
    (tfds_dir / "voc" / "2012" / "5.0.0").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="detection boxes only"):
        find_voc_root(str(tfds_dir))
    extracted = tfds_dir / "downloads" / "extracted" / "TAR.VOCtrainval_11-May-2012.tar"
    shutil.copytree(os.path.dirname(devkit[1]), extracted / "VOCdevkit")
    assert find_voc_root(str(tfds_dir)) == str(extracted / "VOCdevkit" / "VOC2012")


def test_dilated_backbone_plan_and_any_input_size():
    plan = dilated_cell_plan(14, 16)
    # Stems /8, first reduction (cell 4) strided -> /16, second (cell 9) dilated.
    assert [p.strided for p in plan] == [i == 4 for i in range(14)]
    assert [p.dilation for p in plan] == [1] * 10 + [2] * 4
    assert plan[5].reduction_prev and not plan[10].reduction_prev
    os8 = dilated_cell_plan(5, 8)
    assert not any(p.strided for p in os8) and [p.dilation for p in os8] == [1, 1, 2, 2, 4]
    with pytest.raises(ValueError, match="output_stride"):
        dilated_cell_plan(14, 32)

    model = NetworkDeepLabV3(DARTS_V2, num_classes=5, init_channels=4, layers=3,
                             output_stride=8, aspp_channels=8)
    model.build((None, None, None, 3))
    for shape in ((1, 37, 53, 3), (2, 16, 16, 3)):
        assert model(tf.zeros(shape)).shape == shape[:3] + (5,)
    assert model.features(tf.zeros((1, 64, 48, 3))).shape[1:3] == (8, 6)   # stride 8
    # The backbone has exactly the ImageNet network's weights (classifier aside):
    # last cell 4 nodes x 16 channels -> 5 classes.
    backbone = sum(int(np.prod(v.shape)) for v in model.stem.trainable_weights
                   + model.cells.trainable_weights)
    imagenet = NetworkImageNet(DARTS_V2, num_classes=5, init_channels=4, layers=3,
                               auxiliary=False)
    imagenet.build((None, 64, 64, 3))
    assert backbone == count_parameters(imagenet) - (4 * 16 * 5 + 5)


def test_train_voc_trains_reports_miou_and_exports(devkit, tmp_path):
    """One tiny run of the trainer: loss falls, mIoU logged, per-class IoU
    written, and the SavedModel and .keras model predict identically on an
    image of odd size."""
    genotype = tmp_path / "genotype.json"
    save_genotype(DARTS_V2, genotype)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    run, export = tmp_path / "run", tmp_path / "export"
    proc = subprocess.run(
        [sys.executable, "-m", "trainers.train_voc", f"--genotype={genotype}",
         f"--data_dir={devkit[0]}", f"--model_dir={run}", "--preset=cpu", "--epochs=2",
         "--layers=3", "--init_channels=4", "--aspp_channels=8", "--crop_size=33",
         "--eval_size=2", f"--export_dir={export}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "8 train images, 2 val images" in proc.stdout
    assert proc.stdout.count("val_miou=") == 2
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert 0.0 < history[-1]["val_miou"] <= 1.0
    per_class = history[-1]["val_per_class_iou"]
    assert len(per_class) == 21 and per_class["background"] is not None
    assert per_class["bicycle"] is None                       # in neither truth nor prediction

    image = next(iter(make_voc_pipeline(load_voc_split(devkit[1], "val"), batch_size=1,
                                        training=False)))[0][:, :95]   # odd size: 95x71
    model = keras.models.load_model(run / "model.keras")
    expected = model(image, training=False).numpy()
    assert expected.shape == (1, 95, 71, 21)
    exported = tf.saved_model.load(str(export))   # kept referenced while serving
    np.testing.assert_allclose(exported.serve(image).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_an_eval_size_above_val_is_said_in_one_line(devkit, capsys):
    """As train_size's note (data_tf.splits.size_note): all val images are used."""
    inputs = make_voc_inputs(devkit[0], batch_size=2, crop_size=33, eval_size=10)
    assert capsys.readouterr().out.splitlines() == [
        f"eval_size=10 is more than the 4 validation images of VOC val in {devkit[1]}: all 4 "
        "are used."]
    assert inputs.num_val == 4
    for size in (None, 4, 1):
        make_voc_inputs(devkit[0], batch_size=2, crop_size=33, eval_size=size)
        assert capsys.readouterr().out == ""


def test_train_aug_without_sbd_masks_is_one_clear_error(devkit):
    with pytest.raises(DatasetNotFoundError, match="SegmentationClassAug.*--train_split=train"):
        make_voc_inputs(devkit[0], train_split="train_aug", batch_size=2, crop_size=33)
    with pytest.raises(ValueError, match="8 training images but batch_size=16"):
        make_voc_inputs(devkit[0], train_split="train", batch_size=16, crop_size=33)
