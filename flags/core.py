"""Flag groups shared by the trainers (define_* functions, one per group).

Library code never reads flags: trainers call these ``define_*`` functions at
import time, then turn the parsed values into config objects.
"""

import contextlib
import dataclasses
import os
import sys

from absl import flags as absl_flags

from data_tf.image_datasets import dataset_name_error
from data_tf.own_images import MIN_IMAGE_SIDE

__all__ = ["define_preset_flag", "TRAIN_PRESETS", "define_run_flags", "define_image_data_flags",
           "define_search_flags", "define_egs_flags", "egs_options_from_flags",
           "define_ablation_flags", "define_train_flags",
           "define_cifar_train_flags",
           "define_distribution_flags", "define_random_search_flags", "define_thread_flags",
           "apply_preset", "write_flags", "PreparedRun", "FLAG_FILES",
           "train_config_from_flags", "threads_from_flags", "quiet_logging", "prepare_run",
           "prepare_training_run", "prepare_search_run",
           "run_errors", "run_identity", "check_layers", "trainer_flag_values", "NOT_IDENTITY",
           "ADDED_WITH_DEFAULT", "added_defaults",
           "search_config_from_flags", "strategy_from_flags", "SEARCH_PRESETS",
           "search_method_choices", "image_space_choices", "derivation_rule_choices"]

# Presets fill in flags the user did not set on the command line.
SEARCH_PRESETS = {
    # Shows the whole pipeline on Fashion-MNIST in minutes on a 2-core CPU
    # (9-12 minutes measured, README "Benchmark").  Its ~300
    # steps are too few for the architecture to learn much (README "Does the
    # architecture learn?"), so it keeps DATA's cheaper per-node scope (about a
    # third of the edge scope's child per step) and only raises the
    # architecture learning rate (DATA's logits are not decayed by default).
    "cpu": {"dataset": "fashion_mnist", "layers": 4, "init_channels": 8, "train_size": 5000,
            "batch_size": 64, "epochs": 4, "arch_learning_rate": 1e-2},
    # The smallest search shown to learn (README "Does the architecture
    # learn?"): 3 cells (one normal, two reduction), C=8, 10,000 Fashion-MNIST
    # images (20% held out for validation), 20 epochs = 2,500 steps.  Edge
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


def define_run_flags():
    """--model_dir, --seed and --extend_run."""
    absl_flags.DEFINE_string("model_dir", None,
                             "Directory for checkpoints, metrics, TensorBoard and results. An "
                             "existing run there is resumed (same settings), reported (finished) "
                             "or refused (other settings); nothing is overwritten.")
    absl_flags.DEFINE_integer("seed", 0, "Seed of every random draw of the run.", lower_bound=0)
    absl_flags.DEFINE_boolean("extend_run", False, "Continue a run in --model_dir to a larger "
                              "--epochs; its earlier result files are kept as "
                              "<name>.attempt-<n>.json.")
    absl_flags.mark_flag_as_required("model_dir")


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


def define_cost_flags():
    """--cost and --cost_lambda: resource-aware sampling, in every search space
    (search_cifar and search_ptb share this definition)."""
    absl_flags.DEFINE_enum("cost", None, ["none", "params", "madds", "latency"],
                           "Resource-aware search (DARTS-EGS Eq. 5): sample op k from "
                           "p = lam*softmax(logits) + (1-lam)*l, l an efficiency credit from "
                           "each op's parameters, multiply-adds or measured latency "
                           "(default none: the learned distribution only).")
    absl_flags.DEFINE_float("cost_lambda", None, "lam of --cost, in [0, 1]: 1 = effectiveness "
                            "only (default with a cost: 0.5, the preprint's).")


def define_egs_flags():
    """--egs_gradient and --edge_combine: how EGS codes enter the supernet, in
    every search space (search_cifar and search_ptb share this definition)."""
    absl_flags.DEFINE_enum("egs_gradient", None, ["full", "sampled"],
                           "EGS methods: 'full' computes undrawn ops forward only, so every "
                           "bit of the code gets its straight-through gradient (the DATA "
                           "authors'); 'sampled' does not compute them (cheaper; what runs "
                           "before this flag did). Default: the method's (full for data, "
                           "sampled for gdas, which refuses full, and snas_like); darts and "
                           "random refuse the flag.")
    absl_flags.DEFINE_enum("edge_combine", None, ["mean", "sum"],
                           "EGS methods: an edge divides its code by its number of non-none "
                           "ones ('mean', the DATA authors'; default) or adds the selected "
                           "ops ('sum', what runs before this flag did). darts and random "
                           "refuse the flag.")


def search_method_choices():
    """--method choices: the search methods datanas knows."""
    from datanas.searching.methods import SEARCH_METHODS  # pylint: disable=import-outside-toplevel
    return SEARCH_METHODS


def image_space_choices():
    """--space choices of the image search: the registered spaces whose
    supernet reads images (a language-model space has its own trainer)."""
    from datanas.spaces import get_space, space_names  # pylint: disable=import-outside-toplevel
    return tuple(name for name in space_names() if get_space(name).input_kind == "images")


def derivation_rule_choices(spaces=None):
    """--derivation choices: every rule of the registered spaces (or of
    `spaces`), earlier names included."""
    from datanas.spaces import derivation_rule_names  # pylint: disable=import-outside-toplevel
    return derivation_rule_names(spaces)


def define_search_flags():
    """Search-space, estimator and optimiser flags of the search trainers."""
    define_preset_flag(SEARCH_PRESETS)
    absl_flags.DEFINE_enum("method", "data", list(search_method_choices()),
                           "data: EGS with M samples, joint steps, per-edge codes divided by "
                           "their ones, every op's gradient, node_sample derivation (the DATA "
                           "authors' search); gdas: GDAS -- one hard Gumbel op per edge (M=1), "
                           "weights on the training split and logits on a held-out split, "
                           "temperature 10 -> 0.1, top-2 argmax derivation; snas_like: GDAS' "
                           "one-hot sample with DATA's joint steps and 5 -> 1 temperature (what "
                           "gdas ran before); darts: softmax mixing of all ops, held-out "
                           "architecture steps, top-2 derivation; random: uniform cells trained "
                           "for equal budgets, best on validation.")
    absl_flags.DEFINE_integer("M", 4, "EGS sampling times M (1 = Gumbel-Softmax).", lower_bound=1)
    absl_flags.DEFINE_enum("space", "darts_cnn", list(image_space_choices()),
                           "Search space (datanas.spaces registry).")
    absl_flags.DEFINE_enum("egs_scope", None, ["node", "edge"],
                           "Scope of one architecture distribution: per edge over its ops "
                           "(default; paper Eq. 4, the authors' search; the only scope of "
                           "darts, gdas and snas_like, which refuse 'node') or per node over "
                           "its (input, op) pairs (DATA's option; the grouping the authors' "
                           "derivation uses).")
    define_egs_flags()
    define_cost_flags()
    absl_flags.DEFINE_integer("max_params", None, "Budget: parameters of the final network "
                              "(--final_layers cells, --final_init_channels); the expected cost "
                              "of a sampled child enters the loss and derivation resamples until "
                              "the derived network fits.", lower_bound=1)
    absl_flags.DEFINE_integer("max_madds", None, "Budget: multiply-adds of one image through "
                              "the final network (as --max_params).", lower_bound=1)
    # Defaults None (SupernetShape: 20 cells, C=36, weight 1) keep the
    # identities of runs made before these flags.
    absl_flags.DEFINE_integer("final_layers", None, "Cells of the final network budgets refer "
                              "to (default 20).", lower_bound=3)
    absl_flags.DEFINE_integer("final_init_channels", None, "Channels of the final network "
                              "budgets refer to (default 36).", lower_bound=2)
    absl_flags.DEFINE_float("budget_weight", None, "Weight of the over-budget penalty "
                            "(weight * relative excess of the expected cost; default 1).")
    absl_flags.DEFINE_enum("sparse_skip", None, ["cond", "examples"],
                           "How a sparse search step skips unselected ops: 'cond' (one "
                           "tf.cond per op; fastest steady step) or 'examples' (run the op on "
                           "no example; builds ~1.6x faster with half the resident memory, "
                           "steps slower in the supernet; README benchmark). Default: cond "
                           "(unset, so runs made before this flag existed still resume).")
    absl_flags.DEFINE_enum("execution", None, ["auto", "host", "graph"],
                           "How search steps run: 'host' samples the child and runs only its "
                           "ops (shared compiled per-op functions; builds in seconds, child-sized "
                           "memory, steady step slower on a CPU); 'graph' compiles the whole "
                           "supernet as one step (minutes to build; needed on TPUs); 'auto' "
                           "(unset) = host unless on a TPU. README 'Benchmark'.")
    absl_flags.DEFINE_enum("search_mode", None, ["joint", "alternate"],
                           "joint: weights and architecture on the same batch (paper Eq. 6); "
                           "alternate: architecture on a held-out half of the training split. "
                           "Default: the method's (alternate for darts and gdas, joint "
                           "otherwise).")
    absl_flags.DEFINE_enum("derivation", None, list(derivation_rule_choices()),
                           "How the final genotype is derived (all rules are written): "
                           "node_sample = per node, M EGS draws over the node's (input, op) "
                           "probabilities, at most M pairs (the DATA authors'); node_infer = "
                           "the authors' deterministic rule; sample = an EGS draw per "
                           "distribution; inclusion = every (input, op) whose inclusion "
                           "probability is >= 0.5 (most_likely is its old name); darts = top-2 "
                           "edges by per-edge weight. Default: the method's (node_sample for "
                           "data, darts otherwise).")
    absl_flags.DEFINE_enum("darts_order", "1", ["1", "2"],
                           "DARTS architecture gradient: first order, or second order "
                           "(unrolled weights, finite-difference Hessian).")
    define_random_search_flags()
    absl_flags.DEFINE_integer("epochs", 50, "Search epochs.", lower_bound=1)
    absl_flags.DEFINE_integer("layers", 8, "Cells in the search network.", lower_bound=1)
    absl_flags.DEFINE_integer("init_channels", 16, "Channels of the first cells.", lower_bound=2)
    absl_flags.DEFINE_integer("nodes", 4, "Intermediate nodes per cell.", lower_bound=1)
    absl_flags.DEFINE_list("primitives", None,
                           "Candidate ops of every edge, a subset of the DARTS set "
                           "(e.g. none,skip_connect,sep_conv_3x3,max_pool_3x3 for a reduced "
                           "space). Default: all 8 DARTS ops.")
    absl_flags.DEFINE_float("learning_rate", 0.025, "Initial weight learning rate (cosine).")
    absl_flags.DEFINE_float("learning_rate_min", 0.001, "Final weight learning rate.")
    absl_flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
    absl_flags.DEFINE_float("weight_decay", 3e-4, "L2 weight decay of the network weights.")
    absl_flags.DEFINE_float("grad_clip", 5.0, "Global-norm gradient clip of the weights.")
    absl_flags.DEFINE_float("arch_learning_rate", 3e-4, "Adam learning rate of the logits.")
    absl_flags.DEFINE_float("arch_weight_decay", None, "L2 weight decay of the logits "
                            "(default: the method's: 1e-3 for darts and gdas as in their "
                            "papers, 0 for data, whose smaller gradient the decay outweighs; "
                            "README 'Does the architecture learn?').", lower_bound=0)
    absl_flags.DEFINE_integer("arch_warmup_epochs", None, "Epochs at the start whose "
                              "architecture learning rate is 0 (weights warm up on children "
                              "of the initial distribution; default 0).", lower_bound=0)
    absl_flags.DEFINE_float("initial_temperature", None, "EGS temperature at the first epoch "
                            "(default: the method's: 10 for gdas, 5 otherwise).")
    absl_flags.DEFINE_float("final_temperature", None, "EGS temperature at the last epoch "
                            "(default: the method's: 0.1 for gdas, 1 otherwise).")


def define_ablation_flags():
    """Flags of the ablation runner (on top of the search flag group)."""
    absl_flags.DEFINE_enum("ablation", None, ["gap", "num_samples", "seeds", "cost_lambda"],
                           "gap: supernet vs derived child (Table 8); num_samples: M sweep "
                           "(Table 5); seeds: several initialisations (Table 7); cost_lambda: "
                           "resource-aware sampling at several lam (--lambda_values, --cost).")
    absl_flags.mark_flag_as_required("ablation")
    absl_flags.DEFINE_list("methods", ["data", "darts", "gdas"],
                           "Methods compared (gap: data/darts/gdas; seeds: also random; both "
                           "take data_M<m> for DATA with M=m beside --M, e.g. data,data_M7, "
                           "and data_sampled / data_sampled_M<m> for DATA searching with "
                           "--egs_gradient=sampled).")
    absl_flags.DEFINE_list("M_values", None, "num_samples ablation: M values (default 1..K).")
    absl_flags.DEFINE_list("seeds", ["0"], "Seeds (seeds ablation: one run per method and seed).")
    absl_flags.DEFINE_list("lambda_values", ["1.0", "0.75", "0.5", "0.25"],
                           "cost_lambda ablation: lam values (cost: --cost, default params).")
    absl_flags.DEFINE_integer("bn_recalibration_batches", 20, "gap ablation: batches that "
                              "re-estimate the derived child's batch-norm statistics.",
                              lower_bound=0)
    absl_flags.DEFINE_integer("retrain_layers", 6, "Cells of the retrained networks.",
                              lower_bound=1)
    absl_flags.DEFINE_integer("retrain_channels", 16, "Channels of the retrained networks.",
                              lower_bound=2)
    absl_flags.DEFINE_integer("retrain_epochs", 5, "Epochs of retraining (fixed budget).",
                              lower_bound=1)
    absl_flags.DEFINE_float("retrain_learning_rate", 0.05, "Initial learning rate (cosine).")
    absl_flags.DEFINE_integer("retrain_train_size", None, "Training images for retraining "
                              "(default: all; validation carved from them).", lower_bound=1)
    absl_flags.DEFINE_string("retrain_rule", None,
                             "num_samples/seeds: retrain the genotype this derivation rule wrote "
                             "(genotype_<rule>.json) instead of the method's own genotype.json, "
                             "e.g. darts: DATA's top-2 cell, as small as DARTS' and GDAS'. Any "
                             "derivation rule of --space (darts_cnn: node_sample, node_infer, "
                             "sample, inclusion, darts). The searches are shared; rows and "
                             "tables get a _<rule>_rule suffix.")


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


def search_config_from_flags(flag_values):
    """SearchConfig and the space's settings from parsed define_search_flags values
    (method-specific fields are filled in by datanas.searching.runs.build_search)."""
    from datanas.searching.config import SearchConfig  # pylint: disable=import-outside-toplevel
    from datanas.spaces import get_space  # pylint: disable=import-outside-toplevel

    check_layers(flag_values)
    if flag_values["primitives"].present and not flag_values.primitives:
        raise ValueError("--primitives is empty; list the candidate ops (e.g. "
                         "--primitives=none,skip_connect,sep_conv_3x3,max_pool_3x3) or drop the "
                         "flag for all 8 DARTS ops.")

    config = SearchConfig(
        epochs=flag_values.epochs, learning_rate=flag_values.learning_rate,
        learning_rate_min=flag_values.learning_rate_min, momentum=flag_values.momentum,
        weight_decay=flag_values.weight_decay, grad_clip=flag_values.grad_clip,
        arch_learning_rate=flag_values.arch_learning_rate,
        arch_weight_decay=flag_values.arch_weight_decay,
        arch_warmup_epochs=flag_values.arch_warmup_epochs,
        initial_temperature=flag_values.initial_temperature,
        final_temperature=flag_values.final_temperature, seed=flag_values.seed,
        execution=flag_values.execution or "auto", **egs_options_from_flags(flag_values))
    num_samples = flag_values.M
    if flag_values.method in ("gdas", "snas_like") and not flag_values["M"].present:
        num_samples = 1   # GDAS/SNAS draw one op; an explicit other --M is an error later
    settings_class = get_space(flag_values.space).settings_class
    shape = settings_class(num_cells=flag_values.layers, init_channels=flag_values.init_channels,
                           num_nodes=flag_values.nodes, num_samples=num_samples,
                           egs_scope=flag_values.egs_scope,
                           sparse_skip=flag_values.sparse_skip, cost=flag_values.cost,
                           cost_lambda=flag_values.cost_lambda,
                           max_params=flag_values.max_params, max_madds=flag_values.max_madds,
                           final_layers=flag_values.final_layers,
                           final_init_channels=flag_values.final_init_channels,
                           budget_weight=flag_values.budget_weight)
    if flag_values.primitives:
        shape = dataclasses.replace(shape, primitives=tuple(flag_values.primitives))
    return config, shape


#: Flags that shape EGS codes only (methods.EGS_METHODS).
EGS_FLAGS = ("egs_gradient", "edge_combine")


def egs_options_from_flags(flag_values):
    """{egs_gradient, edge_combine} of the search flags (None: the method's);
    refused for a --method that samples no EGS code (darts, random)."""
    from datanas.searching.methods import EGS_METHODS  # pylint: disable=import-outside-toplevel

    values = {name: flag_values[name].value for name in EGS_FLAGS}
    given = [f"--{name}={value}" for name, value in values.items() if value is not None]
    method = flag_values.method
    if given and method not in EGS_METHODS:
        raise ValueError(f"{' '.join(given)}: method {method!r} samples no EGS code (these "
                         f"flags apply to {', '.join(EGS_METHODS)}); drop them.")
    return values


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


def define_thread_flags():
    """--intra_op_threads / --inter_op_threads: TensorFlow's CPU thread pools."""
    absl_flags.DEFINE_integer("intra_op_threads", None, "Threads one op may use (default: "
                              "TensorFlow's, every core). 1 for several runs side by side on a "
                              "small CPU (README 'Benchmark').", lower_bound=1)
    absl_flags.DEFINE_integer("inter_op_threads", None, "Ops run at once (default: "
                              "TensorFlow's, every core).", lower_bound=1)


def threads_from_flags(flag_values):
    """Applies the thread flags (before anything initialises TensorFlow)."""
    from datanas.engine.strategy import configure_threads  # pylint: disable=import-outside-toplevel

    configure_threads(flag_values.intra_op_threads, flag_values.inter_op_threads)


def define_random_search_flags():
    """The random-search baseline's candidates and their epochs."""
    absl_flags.DEFINE_integer("random_candidates", 8, "Random search: cells sampled.",
                              lower_bound=1)
    absl_flags.DEFINE_integer("random_epochs", None, "Random search: epochs per candidate "
                              "(default: --epochs shared out over --random_candidates, the "
                              "remainder one epoch each to the first candidates: the same "
                              "weight-training epochs as a search).",
                              lower_bound=1)


def define_distribution_flags():
    """tf.distribute strategy, checkpointing and determinism flags."""
    absl_flags.DEFINE_enum("distribution_strategy", "one_device",
                           ["one_device", "mirrored", "multi_worker_mirrored", "tpu"],
                           "How to distribute training.")
    absl_flags.DEFINE_integer("num_gpus", 0, "GPUs to use (0 = CPU).", lower_bound=0)
    absl_flags.DEFINE_integer("num_cpu_devices", 1, "Split the CPU into this many logical "
                              "devices (lets 'mirrored' run several replicas on a CPU).",
                              lower_bound=1)
    absl_flags.DEFINE_string("tpu", None, "TPU name or grpc:// address ('' = local TPU VM).")
    absl_flags.DEFINE_list("worker_hosts", None, "host:port of every worker "
                           "(multi_worker_mirrored; alternatively set TF_CONFIG).")
    absl_flags.DEFINE_integer("task_index", None, "This worker's index in --worker_hosts.",
                              lower_bound=0)
    define_thread_flags()
    absl_flags.DEFINE_integer("checkpoint_every_steps", 200, "Also checkpoint every N steps "
                              "(0 = only at epoch ends).", lower_bound=0)
    absl_flags.DEFINE_boolean("deterministic_ops", False, "Reproducible reruns and resumes: "
                              "TensorFlow op determinism and no Grappler graph rewrites "
                              "(README 'Reproducibility').")
    absl_flags.DEFINE_string("dtype_policy", "float32", "Keras dtype policy: 'float32', or "
                             "'mixed_bfloat16' (bfloat16 compute, float32 variables; for TPUs "
                             "and Ampere or newer GPUs, slower on most CPUs). 'mixed_float16' "
                             "is refused: the train steps do not scale the loss.")


def strategy_from_flags(flag_values):
    """Sets the dtype policy and builds the strategy the distribution flags
    ask for (after parsing)."""
    # pylint: disable=import-outside-toplevel
    from datanas.core.precision import set_dtype_policy
    from datanas.engine.strategy import (build_strategy, configure_cpu_devices,
                                         make_deterministic)

    set_dtype_policy(flag_values.dtype_policy)  # before any model or variable is built
    threads_from_flags(flag_values)
    configure_cpu_devices(flag_values.num_cpu_devices)
    strategy = build_strategy(flag_values.distribution_strategy, num_gpus=flag_values.num_gpus,
                              tpu_address=flag_values.tpu, worker_hosts=flag_values.worker_hosts,
                              task_index=flag_values.task_index)
    if flag_values.deterministic_ops:
        make_deterministic()  # after the strategy: its setup may reset function-call options
    return strategy


def quiet_logging(flag_values):
    """absl logs warnings and errors only, unless --verbosity was given."""
    from absl import logging  # pylint: disable=import-outside-toplevel
    if not flag_values["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


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


#: Result file of a training run, and the files kept under attempt names when
#: a finished training run is extended (--extend_run).
TRAIN_RESULT_FILE = "results.json"
TRAIN_RESULT_FILES = (TRAIN_RESULT_FILE, "model.keras")

#: Flags that do not change a run's result (where it is written, how it is
#: distributed or checkpointed); everything else is part of its identity.
NOT_IDENTITY = ("model_dir", "data_dir", "export_dir", "extend_run", "preset",
                "checkpoint_every_steps", "distribution_strategy", "num_gpus", "num_cpu_devices",
                "tpu", "worker_hosts", "task_index", "deterministic_ops", "intra_op_threads",
                "inter_op_threads")

#: Result-changing flags added after run directories already existed, with
#: the value every older run used: a run directory whose identity lacks one
#: resumes when the flag has that value.
ADDED_WITH_DEFAULT = {"dtype_policy": "float32", "random_candidates": 8, "random_epochs": None,
                      "image_size": None}
# egs_gradient / edge_combine, added later, are
# datanas.engine.run_identity.ADDED_SETTINGS (they also hold in the ablation
# runner's identities): an older run counts as egs_gradient=sampled,
# edge_combine=sum.


def added_defaults():
    """ADDED_WITH_DEFAULT as `plan_run(added_defaults=...)` takes it: keyed by
    the setting's path in a run identity."""
    return {f"settings.{k}": v for k, v in ADDED_WITH_DEFAULT.items()}


def trainer_flag_values(flag_values):
    """{name: value} of the trainer's own and datanas' flags (not absl/TF's)."""
    values = {}
    for module, module_flags in flag_values.flags_by_module_dict().items():
        # The trainer's own flags are registered under its file path (run as
        # __main__); library flags (absl logging, TF) are left out.
        if not module.startswith(("absl", "tensorflow", "tensorboard", "keras")):
            values.update({f.name: f.value for f in module_flags})
    return values


def _flagfile_line(name, value):
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no{name}"
    if isinstance(value, (list, tuple)):
        return f"--{name}=" + ",".join(str(v) for v in value)
    return f"--{name}={value}"


#: The files write_flags writes (kept under attempt names when a run is extended).
FLAG_FILES = ("flags.json", "flagfile.txt")


def write_flags(flag_values, model_dir, prefix="", *, extended=False):
    """Writes the run's flags as JSON and as a flagfile that reproduces them
    (``--flagfile=<model_dir>/flagfile.txt``: lists comma-separated, booleans
    as --name/--noname).  `extended`: the run was extended (--extend_run),
    which only a command with --extend_run reads back, so the flagfile has
    it; otherwise --extend_run, a one-off request, is left out."""
    from datanas.engine.run_files import (  # pylint: disable=import-outside-toplevel
        write_json_atomic, write_text_atomic)

    values = trainer_flag_values(flag_values)
    flags_json, flagfile = FLAG_FILES
    write_json_atomic(os.path.join(model_dir, prefix + flags_json), dict(sorted(values.items())))
    lines = [_flagfile_line(name, value) for name, value in sorted(values.items())
             if value is not None and name != "extend_run"]
    if extended:
        lines.append("--extend_run")
    write_text_atomic(os.path.join(model_dir, prefix + flagfile), "\n".join(lines) + "\n")


def run_identity(flag_values, trainer, inputs):
    """Every result-changing setting of this command (see NOT_IDENTITY), and
    what it reads (`inputs`: dataset name and split sizes, a genotype...)."""
    from datanas.engine.run_identity import FORMAT_VERSION  # pylint: disable=import-outside-toplevel

    settings = {k: v for k, v in sorted(trainer_flag_values(flag_values).items())
                if k not in NOT_IDENTITY}
    # pylint: disable=import-outside-toplevel
    from datanas.searching.methods import EGS_METHODS, SEARCH_METHODS, method_temperatures
    method = settings.get("method")
    if method in SEARCH_METHODS and "initial_temperature" in settings:
        # The temperatures the run anneals: unset ones are the method's
        # (runs before the method chose them recorded 5 -> 1 for every method).
        settings["initial_temperature"], settings["final_temperature"] = method_temperatures(
            method, settings["initial_temperature"], settings["final_temperature"])
    if method is not None and method not in EGS_METHODS:
        # They shape EGS codes only: a darts or random run (refused with
        # them) is the same run as before they existed.
        for name in EGS_FLAGS:
            settings.pop(name, None)
    return {"format": FORMAT_VERSION, "trainer": trainer, "settings": settings, "inputs": inputs}


class PreparedRun:
    """What prepare_run decided.  `finished`: the run had finished with
    these settings and its result was printed (the caller stops).  Else the
    caller builds its model -- whatever that checks is checked before the
    run directory is touched -- then calls `begin()`, which locks the
    directory and writes the identity and the flag files (a new or extended
    run), keeping an extended run's earlier files under attempt names."""

    def __init__(self, finished=False, begin=None):
        self.finished = finished
        self._begin = begin

    def begin(self):
        """Writes what the plan calls for (once; nothing for a non-chief
        worker).  Raises RunRefused / RunLocked (one line)."""
        begin, self._begin = self._begin, None
        if begin is not None:
            begin()


def prepare_run(flag_values, *, trainer, inputs, result_file, result_files, strategy):
    """Plans the run in --model_dir before anything is built or written.

    Returns a PreparedRun: ``finished`` when the run already finished with
    these settings (its result is printed; the caller stops); else, after
    seeding Python, NumPy and Keras with --seed for the run that goes ahead,
    one whose ``begin()`` the caller calls once its model is built: nothing
    is written before then, so a setting refused while building leaves no
    trace.  Non-chief workers of a multi-worker run skip the plan (they
    write into the chief's run directory, under worker_<id>).

    --export_dir is checked here too (check_export_dir): it may not hold
    files (an export is never replaced) nor be, or lie in, another run's
    directory; an extension (--extend_run) into the export its run wrote
    keeps that export under an attempt name.

    Raises:
      RunRefused: the directory cannot be used; one line naming why.
    """
    # pylint: disable=import-outside-toplevel
    from datanas.engine.run_identity import (EXTENDED_FROM, begin_run, check_export_dir,
                                             check_output_dir, plan_run)
    from datanas.engine.strategy import is_chief

    export_dir = flag_values["export_dir"].value if "export_dir" in flag_values else None
    if export_dir:
        check_output_dir(export_dir, "--export_dir", allow_inside=flag_values.model_dir)
    if not is_chief(strategy):
        _seed(flag_values)
        return PreparedRun()
    plan = plan_run(flag_values.model_dir, run_identity(flag_values, trainer, inputs),
                    result_file=result_file, extend=flag_values.extend_run,
                    added_defaults=added_defaults())
    if plan.status == "finished":
        _report_finished(plan, result_file)
        return PreparedRun(finished=True)
    earlier_export = None
    if export_dir:
        if plan.status == "extend":
            earlier_export = _recorded_export(plan, result_file)
        check_export_dir(export_dir, flag_values.model_dir, status=plan.status,
                         earlier_export=earlier_export)

    def begin():
        begin_run(plan, result_files=(*result_files, *FLAG_FILES), earlier_export=earlier_export)
        if plan.status in ("new", "extend") or not os.path.exists(
                os.path.join(flag_values.model_dir, FLAG_FILES[0])):   # killed before them
            write_flags(flag_values, flag_values.model_dir,
                        extended=EXTENDED_FROM in plan.identity)

    _seed(flag_values)
    return PreparedRun(begin=begin)


def _recorded_export(plan, result_file):
    """The export directory the run in `plan` wrote, as its result file
    records it (None: none recorded, or no result yet)."""
    # pylint: disable=import-outside-toplevel
    from datanas.engine.run_files import read_json

    path = os.path.join(plan.model_dir, result_file)
    if not os.path.isfile(path):
        return None
    recorded = read_json(path)
    return recorded.get("export_dir") if isinstance(recorded, dict) else None


#: Result file of a search run, and the files kept under attempt names when a
#: finished search is extended (--extend_run).
SEARCH_RESULT_FILE = "search_result.json"
def _search_result_files():
    from datanas.spaces import result_genotype_files  # pylint: disable=import-outside-toplevel
    return (SEARCH_RESULT_FILE, "genotype.json", *result_genotype_files(),
            "arch_probabilities.json")


SEARCH_RESULT_FILES = _search_result_files()


def prepare_search_run(flag_values, *, trainer, inputs, strategy):
    """prepare_run for the search trainers (search_result.json, genotypes)."""
    return prepare_run(flag_values, trainer=trainer, inputs=inputs, strategy=strategy,
                       result_file=SEARCH_RESULT_FILE, result_files=SEARCH_RESULT_FILES)


def prepare_training_run(flag_values, *, trainer, inputs, strategy):
    """prepare_run for the evaluation trainers (results.json, model.keras)."""
    return prepare_run(flag_values, trainer=trainer, inputs=inputs, strategy=strategy,
                       result_file=TRAIN_RESULT_FILE, result_files=TRAIN_RESULT_FILES)


def _seed(flag_values):
    import keras  # pylint: disable=import-outside-toplevel
    keras.utils.set_random_seed(flag_values.seed)


@contextlib.contextmanager
def run_errors(trainer):
    """Ends a run the way a cluster expects: preemption -> message + exit 143;
    a diverged run or a mismatching checkpoint -> one error line."""
    # pylint: disable=import-outside-toplevel
    from datanas.engine.checkpoints import CheckpointMismatchError
    from datanas.engine.loop import NonFiniteError, RunPreempted
    from datanas.engine.run_files import RunFileDamaged, RunWriteFailed

    try:
        yield
    except RunPreempted as preempted:
        print(str(preempted), flush=True)
        sys.exit(143)
    except (NonFiniteError, CheckpointMismatchError, RunFileDamaged, RunWriteFailed) as error:
        sys.exit(f"{trainer}: error: {error}")


def _report_finished(plan, result_file):
    """Prints what a finished run's result file says (nothing is written)."""
    # pylint: disable=import-outside-toplevel
    from datanas.engine.run_files import RunFileDamaged, read_json

    path = os.path.join(plan.model_dir, result_file)
    try:
        result = read_json(path)
    except RunFileDamaged as damaged:   # one line naming it, and the way out
        raise RunFileDamaged(f"{damaged} Move it away and rerun the same command: the run's "
                             "last checkpoint writes it again.") from None
    print(f"The run in {plan.model_dir} already finished with these settings; nothing was "
          f"changed. Result ({path}):", flush=True)
    for key, value in result.items():
        if not isinstance(value, (dict, list)):
            print(f"  {key}: {value}", flush=True)
