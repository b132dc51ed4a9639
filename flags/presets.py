"""Presets: named sets of flag values the user did not set on the command line.

Library code never reads flags: trainers define these at import time and
turn the parsed values into config objects.
"""

from absl import flags as absl_flags

__all__ = ["SEARCH_PRESETS", "TRAIN_PRESETS", "define_preset_flag", "apply_preset"]


# Presets fill in flags the user did not set on the command line.
SEARCH_PRESETS = {
    # Shows the whole pipeline on Fashion-MNIST in minutes on a 2-core CPU
    # (280 steps: about 9 minutes compiled, docs/benchmark.md "Which path wins
    # a whole search").  Too few steps for the architecture to learn much
    # (docs/architecture_learning.md), so it only raises the architecture
    # learning rate (DATA's logits are not decayed by default); the scope is
    # DATA's default (edge).
    "cpu": {"dataset": "fashion_mnist", "layers": 4, "init_channels": 8, "train_size": 5000,
            "batch_size": 64, "epochs": 4, "arch_learning_rate": 1e-2},
    # The smallest search shown to learn (docs/architecture_learning.md): 3
    # cells (one normal, two reduction), C=8, 10,000 Fashion-MNIST images
    # (20% held out for validation), 20 epochs = 2,500 steps.  Edge
    # scope (2-6x the per-node gradient's signal-to-noise), architecture
    # learning rate 5e-3 and no logit decay for DATA: three seeds drop the
    # entropy 25-33% and agree at Pearson r = 0.54, where the earlier preset
    # (node scope, 3,000 images, 10 epochs, lr 3e-3, decay 1e-3) moved it by
    # 0.1%.  ~30 CPU-minutes per DATA search; the ablation runner's baselines
    # share every setting but their own logit decay.
    "ablation": {"dataset": "fashion_mnist", "layers": 3, "init_channels": 8,
                 "train_size": 10000, "validation_fraction": 0.2, "batch_size": 64,
                 "epochs": 20, "egs_scope": "edge", "arch_learning_rate": 5e-3},
    # DARTS' CIFAR-10 search settings (8 cells, C=16, 50 epochs, batch 64), which
    # the DATA paper adopts for its cells; the DATA paper itself mentions 100
    # search epochs (add --epochs=100 for that).
    "darts_search": {"dataset": "cifar10", "layers": 8, "init_channels": 16,
                     "train_size": None, "batch_size": 64, "epochs": 50},
}
# Earlier preset names, still accepted.


# Earlier preset names, still accepted.
SEARCH_PRESETS["paper"] = SEARCH_PRESETS["darts_search"]


TRAIN_PRESETS = {
    # The README quickstart's training step: a found cell trained from scratch
    # on 6,000 Fashion-MNIST images (10% held out to pick the best epoch) in a
    # few minutes on a 2-core CPU; 5 cells, C=12, 3 epochs, no cutout.
    "cpu": {"dataset": "fashion_mnist", "layers": 5, "init_channels": 12, "train_size": 6000,
            "batch_size": 96, "epochs": 3, "validation_fraction": 0.1, "cutout": 0},
}


def define_preset_flag(presets):
    """--preset: one of `presets` ({name: {flag: value}}), applied by `apply_preset`."""
    absl_flags.DEFINE_enum("preset", None, list(presets),
                           "Fill unset flags from a preset: " + "; ".join(
                               f"{k}={v}" for k, v in presets.items()))


def apply_preset(flag_values, presets):
    """Sets the preset's values for every flag not given on the command line."""
    name = flag_values["preset"].value
    if not name:
        return {}
    applied = {}
    for key, value in presets[name].items():
        if not flag_values[key].present:
            flag_values[key].value = value
            applied[key] = value
    return applied
