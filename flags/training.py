"""Training flags: image data, the final network and its optimiser, and the
training configuration built from them.

Library code never reads flags: trainers define these at import time and
turn the parsed values into config objects.
"""

from absl import flags as absl_flags

from data_tf.image_datasets import dataset_name_error
from data_tf.own_images import MIN_IMAGE_SIDE

__all__ = ["define_image_data_flags", "define_train_flags", "define_cifar_train_flags",
           "train_config_from_flags", "check_layers"]


def define_image_data_flags(default_dataset="cifar10", default_batch_size=64):
    """--dataset, --data_dir, --image_size, --train_size, --batch_size, --validation_fraction."""
    absl_flags.DEFINE_string("dataset", default_dataset,
                             "Image dataset: cifar10, fashion_mnist, digits, folder (your own "
                             "images: --data_dir holds one sub-folder per class) or tfds:<name> "
                             "(a prepared TFDS image-classification dataset); docs/datasets.md.")
    absl_flags.register_validator("dataset", lambda name: dataset_name_error(name) is None,
                                  message="allowed: cifar10, fashion_mnist, digits, folder or "
                                          "tfds:<name>")
    absl_flags.DEFINE_integer("image_size", None,
                              "--dataset=folder / tfds:<name>: resize every image to N x N "
                              "(default: keep the images' size, which must then be the same "
                              "for all).", lower_bound=MIN_IMAGE_SIDE)
    absl_flags.DEFINE_string("data_dir", None,
                             "Where the dataset lives (standard on-disk format or a TFDS "
                             "data_dir); see README 'Datasets'.")
    absl_flags.DEFINE_integer("train_size", None,
                              "Use a class-balanced subset of this many training images.",
                              lower_bound=1)
    absl_flags.DEFINE_integer("batch_size", default_batch_size, "Global batch size.",
                              lower_bound=1)
    absl_flags.DEFINE_float("validation_fraction", 0.1,
                            "Fraction of the training images held out for validation "
                            "(the test split is never used for selection).",
                            lower_bound=0.0, upper_bound=1.0)


def define_train_flags(*, epochs, learning_rate, weight_decay, init_channels, layers,
                       lr_schedule="cosine", label_smoothing=0.0, cutout=0):
    """Flags of the evaluation trainers (train a genotype from scratch)."""
    absl_flags.DEFINE_string("genotype", None,
                             "genotype.json file, or a search --model_dir containing one.")
    absl_flags.mark_flag_as_required("genotype")
    absl_flags.DEFINE_integer("epochs", epochs, "Training epochs.", lower_bound=1)
    absl_flags.DEFINE_integer("layers", layers, "Cells in the network.", lower_bound=1)
    absl_flags.DEFINE_integer("init_channels", init_channels, "Channels of the first cells.",
                              lower_bound=2)
    absl_flags.DEFINE_float("learning_rate", learning_rate, "Initial learning rate.")
    absl_flags.DEFINE_float("learning_rate_min", 0.0, "Final learning rate.")
    absl_flags.DEFINE_enum("lr_schedule", lr_schedule, ["cosine", "linear"],
                           "Learning-rate decay over all steps.")
    absl_flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
    absl_flags.DEFINE_float("weight_decay", weight_decay, "L2 weight decay.")
    absl_flags.DEFINE_float("grad_clip", 5.0, "Global-norm gradient clip (0 = off).")
    absl_flags.DEFINE_boolean("auxiliary", True, "Use the auxiliary head.")
    absl_flags.DEFINE_float("auxiliary_weight", 0.4, "Weight of the auxiliary loss.")
    absl_flags.DEFINE_float("drop_path_prob", 0.2, "Final drop-path probability (ramped "
                            "linearly from 0).")
    absl_flags.DEFINE_float("label_smoothing", label_smoothing, "Label smoothing.")
    absl_flags.DEFINE_integer("cutout", cutout, "Cutout square side (0 = off).", lower_bound=0)
    absl_flags.DEFINE_string("export_dir", None, "Write a SavedModel (images -> logits) here.")


def define_cifar_train_flags():
    """Flags of the CIFAR-style evaluation trainer only: --stem_stride, --test_each_epoch."""
    absl_flags.DEFINE_enum("stem_stride", "1", ["1", "2"],
                           "Stride of the 3x3 stem: 2 halves the resolution the cells see "
                           "(28x28 Fashion-MNIST -> 14x14, ~1/4 of the multiply-adds).")
    absl_flags.DEFINE_boolean("test_each_epoch", True,
                              "Evaluate the test split after every epoch; false: after the "
                              "last epoch only (the test split reported once).")


def train_config_from_flags(flag_values):
    """TrainConfig of the evaluation trainers from parsed define_train_flags values."""
    from datanas.training.trainer import TrainConfig  # pylint: disable=import-outside-toplevel

    check_layers(flag_values)

    return TrainConfig(
        epochs=flag_values.epochs, learning_rate=flag_values.learning_rate,
        learning_rate_min=flag_values.learning_rate_min, lr_schedule=flag_values.lr_schedule,
        momentum=flag_values.momentum, weight_decay=flag_values.weight_decay,
        grad_clip=flag_values.grad_clip, auxiliary_weight=flag_values.auxiliary_weight,
        drop_path_prob=flag_values.drop_path_prob, label_smoothing=flag_values.label_smoothing,
        seed=flag_values.seed)


def check_layers(flag_values):
    """Refuses stacks too short for both cell kinds (reductions at 1/3 and 2/3)."""
    if flag_values.layers < 3:
        raise ValueError(f"--layers={flag_values.layers}: at least 3 cells are needed, so that "
                         "the stack has normal cells besides the two reduction cells (at 1/3 and "
                         "2/3 of the depth); with fewer, every cell is a reduction cell.")
