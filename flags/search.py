"""Search flags: method, space, estimator, costs, random search and ablations, and
the search configuration built from them.

Library code never reads flags: trainers define these at import time and
turn the parsed values into config objects.
"""

import dataclasses

from absl import flags as absl_flags

from flags.presets import SEARCH_PRESETS, define_preset_flag
from flags.training import check_layers

__all__ = ["define_arch_schedule_flags", "define_cost_flags", "define_egs_flags",
           "search_method_choices", "image_space_choices", "derivation_rule_choices",
           "define_search_flags", "define_ablation_flags", "search_config_from_flags", "EGS_FLAGS",
           "egs_options_from_flags", "define_random_search_flags"]


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


def define_arch_schedule_flags():
    """The logits' weight decay and the EGS temperature schedule (each
    defaults to the method's), shared by the image and recurrent searches."""
    absl_flags.DEFINE_float("arch_weight_decay", None, "L2 weight decay of the logits "
                            "(default: the method's: 1e-3 for darts and gdas as in their "
                            "papers, 0 for data, whose smaller gradient the decay outweighs; "
                            "README 'Does the architecture learn?').", lower_bound=0)
    absl_flags.DEFINE_float("initial_temperature", None, "EGS temperature at the first epoch "
                            "(default: the method's: 10 for gdas, 5 otherwise).")
    absl_flags.DEFINE_float("final_temperature", None, "EGS temperature at the last epoch "
                            "(default: the method's: 0.1 for gdas, 1 otherwise).")


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
    define_arch_schedule_flags()
    absl_flags.DEFINE_integer("arch_warmup_epochs", None, "Epochs at the start whose "
                              "architecture learning rate is 0 (weights warm up on children "
                              "of the initial distribution; default 0).", lower_bound=0)


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
    absl_flags.DEFINE_boolean("finished_only", False,
                              "Search, retrain and measure nothing: make the table of the runs "
                              "already finished under --model_dir/runs and name the others in "
                              "the summary (not_finished).")
    absl_flags.DEFINE_string("retrain_rule", None,
                             "num_samples/seeds: retrain the genotype this derivation rule wrote "
                             "(genotype_<rule>.json) instead of the method's own genotype.json, "
                             "e.g. darts: DATA's top-2 cell, as small as DARTS' and GDAS'. Any "
                             "derivation rule of --space (darts_cnn: node_sample, node_infer, "
                             "sample, inclusion, darts). The searches are shared; rows and "
                             "tables get a _<rule>_rule suffix.")


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


def define_random_search_flags():
    """The random-search baseline's candidates and their epochs."""
    absl_flags.DEFINE_integer("random_candidates", 8, "Random search: cells sampled.",
                              lower_bound=1)
    absl_flags.DEFINE_integer("random_epochs", None, "Random search: epochs per candidate "
                              "(default: --epochs shared out over --random_candidates, the "
                              "remainder one epoch each to the first candidates: the same "
                              "weight-training epochs as a search).",
                              lower_bound=1)
