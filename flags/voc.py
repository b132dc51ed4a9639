"""Flags of the VOC segmentation trainer (trainers/train_voc.py).

Defaults are DeepLab v3's VOC recipe, which DATA (paper Section 4.3) adopts
with its searched cells as the backbone: crop 513, batch 16, output stride
16, SGD momentum 0.9 from 0.007 with the poly schedule (power 0.9), no
gradient clipping, trained on train_aug; 46 epochs of train_aug are
DeepLab's 30K iterations of 16 crops.  Weight decay 4e-5 is the value of
DeepLab's reference code for its separable-convolution backbones
(Xception, MobileNet), which the cells' separable convolutions resemble.
The backbone is the ImageNet mobile-setting network (C=48, 14 cells).
Library code never reads flags: these functions turn them into configs.
"""

from absl import flags as absl_flags

from flags import core as flags_core

__all__ = ["define_voc_flags", "voc_train_config_from_flags", "VOC_TRAIN_PRESETS"]

VOC_TRAIN_PRESETS = {
    # A few CPU minutes (README "Semantic segmentation"): 65x65 crops, a 5-cell
    # C=8 backbone, ASPP of 32 filters, VOC's plain train split.  A larger
    # learning rate than DeepLab's 0.007 since the run is a few hundred steps.
    "cpu": {"crop_size": 65, "init_channels": 8, "layers": 5, "aspp_channels": 32,
            "batch_size": 4, "epochs": 8, "learning_rate": 0.05, "train_split": "train"},
}


def define_voc_flags():
    """Genotype, data, network, optimiser and export flags of train_voc."""
    flags_core.define_preset_flag(VOC_TRAIN_PRESETS)
    absl_flags.DEFINE_string("genotype", None,
                             "genotype.json file, or a search --model_dir containing one.")
    absl_flags.mark_flag_as_required("genotype")
    absl_flags.DEFINE_string("data_dir", None, "VOCdevkit/VOC2012, or any directory above it "
                             "(e.g. a TFDS data_dir holding the extracted VOC archive); see "
                             "README 'Semantic segmentation'.")
    absl_flags.mark_flag_as_required("data_dir")
    absl_flags.DEFINE_enum("train_split", "train_aug", ["train", "train_aug"],
                           "train: VOC's 1,464 images; train_aug: the 10,582 images with SBD's "
                           "masks (SegmentationClassAug/, ImageSets/Segmentation/"
                           "train_aug.txt), DeepLab's training set.")
    absl_flags.DEFINE_integer("train_size", None, "Use only this many training images.",
                              lower_bound=1)
    absl_flags.DEFINE_integer("eval_size", None, "Evaluate on only the first N val images.",
                              lower_bound=1)
    absl_flags.DEFINE_integer("epochs", 46, "Training epochs (46 of train_aug = DeepLab's 30K "
                              "iterations of batch 16).", lower_bound=1)
    absl_flags.DEFINE_integer("batch_size", 16, "Global batch of crops.", lower_bound=1)
    absl_flags.DEFINE_integer("crop_size", 513, "Side of the random training crops.",
                              lower_bound=17)
    absl_flags.DEFINE_integer("layers", 14, "Cells of the backbone.", lower_bound=3)
    absl_flags.DEFINE_integer("init_channels", 48, "Channels of the first cells.",
                              lower_bound=2)
    absl_flags.DEFINE_enum("output_stride", "16", ["8", "16"],
                           "Input/feature size ratio: later reductions become dilation; ASPP "
                           "rates 6/12/18 at 16, 12/24/36 at 8.")
    absl_flags.DEFINE_integer("aspp_channels", 256, "Filters of the ASPP branches.",
                              lower_bound=1)
    absl_flags.DEFINE_float("learning_rate", 0.007, "Initial learning rate (poly decay, "
                            "power 0.9).")
    absl_flags.DEFINE_float("learning_rate_min", 0.0, "Final learning rate.")
    absl_flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
    absl_flags.DEFINE_float("weight_decay", 4e-5, "L2 weight decay.")
    absl_flags.DEFINE_float("grad_clip", 0.0, "Global-norm gradient clip (0 = off, DeepLab).")
    absl_flags.DEFINE_float("drop_path_prob", 0.0, "Final drop-path probability of the "
                            "cells (ramped linearly from 0; DeepLab: off).")
    absl_flags.DEFINE_string("export_dir", None, "Write a SavedModel (images of any size -> "
                             "per-pixel logits of the same size) here.")


def voc_train_config_from_flags(flag_values):
    """TrainConfig of the VOC flags (poly schedule, no auxiliary head)."""
    from datanas.training.trainer import TrainConfig  # pylint: disable=import-outside-toplevel

    return TrainConfig(
        epochs=flag_values.epochs, learning_rate=flag_values.learning_rate,
        learning_rate_min=flag_values.learning_rate_min, lr_schedule="poly",
        momentum=flag_values.momentum, weight_decay=flag_values.weight_decay,
        grad_clip=flag_values.grad_clip, auxiliary_weight=0.0,
        drop_path_prob=flag_values.drop_path_prob, seed=flag_values.seed)
