"""Flag groups of the language-model trainers (recurrent search, PTB/WT2 training).

Defaults follow the DATA paper where it says something (12 nodes, M=4,
PTB: embedding = hidden = 850, batch 64; WT2: 700, weight decay 5e-7, hidden
dropout 0.15) and DARTS' recurrent code for the rest (search: 300 units,
batch 256, SGD 20, clip 0.25, weight decay 5e-7, architecture Adam 3e-3 with
betas (0.9, 0.999) and decay 1e-3; training: SGD 20 with NT-ASGD, weight decay 8e-7, the dropouts).
Library code never reads flags: these functions turn them into configs.
"""

from absl import flags as absl_flags

from flags import core as flags_core

__all__ = ["define_lm_data_flags", "define_lm_search_flags", "define_lm_train_flags",
           "refuse_budget_flags", "parse_search_flags", "lm_search_config_from_flags",
           "lm_train_config_from_flags", "check_bptt_fits", "LM_SEARCH_PRESETS",
           "LM_TRAIN_PRESETS", "DATASET_DEFAULTS"]

#: What the paper changes between PTB and WT2 (None flags take these).
DATASET_DEFAULTS = {
    "ptb": {"hidden_size": 850, "weight_decay": 8e-7, "dropout_h": 0.25},
    "wt2": {"hidden_size": 700, "weight_decay": 5e-7, "dropout_h": 0.15},
}

LM_SEARCH_PRESETS = {
    # A whole search on a 2-core CPU in a few minutes: a 6-node cell of 64
    # units, 10 epochs.  Output dropout 0.25: DARTS' 0.75 (tuned for 300
    # units) left 16 of 64 units and the supernet's loss stayed at uniform
    # (measured, README).  Demonstrates the pipeline, not the paper's search.
    "cpu": {"nodes": 6, "hidden_size": 64, "batch_size": 32, "eval_batch_size": 10,
            "epochs": 10, "dropout": 0.25},
}
LM_TRAIN_PRESETS = {
    # A few minutes on a 2-core CPU: 128 units, 10 epochs, evaluation batches of 10.
    "cpu": {"hidden_size": 128, "batch_size": 32, "eval_batch_size": 10,
            "test_batch_size": 10, "epochs": 10},
}


def define_lm_data_flags(default_dataset="ptb", default_batch_size=64):
    """--dataset, --data_dir, --batch_size, --eval_batch_size, --bptt, --train_tokens."""
    absl_flags.DEFINE_enum("dataset", default_dataset, ["ptb", "wt2"],
                           "Corpus: Penn Treebank or WikiText-2 (word level).")
    absl_flags.DEFINE_string("data_dir", None, "Directory with the corpus' train/valid/test "
                             "files (ptb.*.txt, train.txt..., or wiki.*.tokens); see README "
                             "'Language modelling'.")
    absl_flags.DEFINE_integer("batch_size", default_batch_size,
                              "Global rows of a training batch (contiguous streams).",
                              lower_bound=1)
    absl_flags.DEFINE_integer("eval_batch_size", 10, "Rows of validation batches (DARTS: 10).",
                              lower_bound=1)
    absl_flags.DEFINE_integer("bptt", 35, "Mean truncated-BPTT window length.", lower_bound=2)
    absl_flags.DEFINE_integer("train_tokens", None, "Use only the first N training tokens "
                              "(quick runs).", lower_bound=100)


#: (attribute, name) of the streams of data_tf.lm_inputs' LMSearchInputs / LMTrainInputs.
_STREAMS = (("train_stream", "training"), ("arch_stream", "architecture"),
            ("valid_stream", "validation"), ("test_stream", "test"))


def check_bptt_fits(inputs, bptt, more_data):
    """Refuses a --bptt longer than a row of any stream of `inputs`.

    Each stream is cut into rows of its batch (``--batch_size``,
    ``--eval_batch_size``...); a row of n tokens holds windows of at most
    n - 1 steps (the targets are the next tokens), so a longer --bptt would
    give every batch a window shorter than asked for, or none.
    `more_data` names how to get longer rows (e.g. "more --train_tokens").

    Raises:
      ValueError: one line naming the stream, its sizes and what is allowed.
    """
    for attribute, name in _STREAMS:
        stream = getattr(inputs, attribute, None)
        if stream is None or bptt <= stream.length - 1:
            continue
        raise ValueError(
            f"--bptt={bptt} is longer than a row of the {name} stream: its "
            f"{stream.tokens.size} tokens in {stream.flag}={stream.rows} rows give "
            f"{stream.length} tokens per row, i.e. windows of at most {stream.length - 1} "
            f"steps; use --bptt<={stream.length - 1}, a smaller {stream.flag} or {more_data}.")


def _define_cell_flags(default_hidden):
    absl_flags.DEFINE_integer("hidden_size", default_hidden, "Embedding = hidden size "
                              "(weights tied).", lower_bound=2)
    absl_flags.DEFINE_float("dropout", 0.75, "Locked dropout of the RNN outputs.")
    absl_flags.DEFINE_float("dropout_h", None, "Variational dropout of the cell's states.")
    absl_flags.DEFINE_float("dropout_x", 0.75, "Variational dropout of the cell's input.")
    absl_flags.DEFINE_float("dropout_i", 0.2, "Locked dropout of the embeddings.")
    absl_flags.DEFINE_float("learning_rate", 20.0, "SGD learning rate.")
    absl_flags.DEFINE_float("grad_clip", 0.25, "Global-norm gradient clip.")
    absl_flags.DEFINE_float("weight_decay", None, "L2 weight decay (default: the "
                            "dataset's).")
    absl_flags.DEFINE_float("temporal_weight", 1e-3, "Temporal activation regularisation "
                            "(beta).")


def define_lm_search_flags():
    """Recurrent search: method, estimator, cell size, optimisers."""
    flags_core.define_preset_flag(LM_SEARCH_PRESETS)
    absl_flags.DEFINE_enum("method", "data", list(flags_core.search_method_choices()),
                           "data: EGS with M samples, joint steps; gdas: GDAS -- one hard "
                           "Gumbel op per edge (M=1), logits on a held-out split, temperature "
                           "10 -> 0.1; snas_like: that sample with DATA's joint steps and "
                           "5 -> 1; darts: "
                           "softmax mixing, held-out architecture steps; random: the best "
                           "of --random_candidates uniform cells on validation perplexity.")
    flags_core.define_random_search_flags()
    absl_flags.DEFINE_integer("M", 4, "EGS sampling times M.", lower_bound=1)
    absl_flags.DEFINE_enum("egs_scope", None, ["node", "edge"],
                           "One distribution per node over its (input, activation) pairs "
                           "(DATA) or per edge (darts, gdas).")
    absl_flags.DEFINE_enum("search_mode", None, ["joint", "alternate"],
                           "joint (DATA) or alternate (architecture on a held-out half of "
                           "the training stream; darts' default).")
    absl_flags.DEFINE_enum("derivation", None,
                           list(flags_core.derivation_rule_choices(["darts_rnn"])),
                           "Rule of the written genotype.json (all rules are written).")
    absl_flags.DEFINE_enum("darts_order", "1", ["1", "2"], "DARTS architecture gradient order.")
    absl_flags.DEFINE_integer("epochs", 50, "Search epochs (DARTS: 50).", lower_bound=1)
    absl_flags.DEFINE_integer("nodes", 12, "Intermediate nodes of the cell (DATA: 12).",
                              lower_bound=1)
    _define_cell_flags(300)
    absl_flags.DEFINE_float("arch_learning_rate", 3e-3, "Adam learning rate of the logits.")
    flags_core.define_arch_schedule_flags()
    flags_core.define_egs_flags()
    flags_core.define_cost_flags()


#: search_cifar's budget flags: the recurrent space has no final-network budgets.
BUDGET_FLAGS = ("max_params", "max_madds", "final_layers", "final_init_channels",
                "budget_weight")


def refuse_budget_flags(argv, trainer="search_ptb"):
    """ValueError naming the first budget flag of `argv` (before a "--")."""
    for arg in argv[1:]:
        if arg == "--":
            break
        name = arg.lstrip("-").split("=", 1)[0]
        if arg.startswith("-") and name in BUDGET_FLAGS:
            raise ValueError(
                f"--{name}: budgets on the final network exist for the conv space only "
                f"(search_cifar); {trainer} searches the recurrent space, where "
                f"--cost=params|madds|latency with --cost_lambda steers the search toward "
                f"cheaper cells.")


def parse_search_flags(argv):
    """absl's flag parser for search_ptb, after refusing budget flags with
    one line instead of absl's 'Unknown command line flag'."""
    import sys  # pylint: disable=import-outside-toplevel
    from absl import app  # pylint: disable=import-outside-toplevel

    try:
        refuse_budget_flags(argv)
    except ValueError as error:
        sys.exit(f"search_ptb: error: {error}")
    return app.parse_flags_with_usage(argv)


def define_lm_train_flags():
    """Training a recurrent genotype (PTB/WT2 evaluation)."""
    flags_core.define_preset_flag(LM_TRAIN_PRESETS)
    absl_flags.DEFINE_string("genotype", None, "Recurrent genotype.json, or a search "
                             "--model_dir containing one.")
    absl_flags.mark_flag_as_required("genotype")
    absl_flags.DEFINE_integer("epochs", 8000, "Training epochs (DARTS: 8000; the DATA paper "
                              "reports 1600).", lower_bound=1)
    _define_cell_flags(None)
    absl_flags.DEFINE_integer("test_batch_size", 1, "Rows of test batches (DARTS: 1; a "
                              "multiple of the replica count).", lower_bound=1)
    absl_flags.DEFINE_integer("nonmono", 5, "NT-ASGD: switch when validation is worse than "
                              "the best before the last N epochs.", lower_bound=1)
    absl_flags.DEFINE_string("export_dir", None, "Write a SavedModel (tokens -> next-token "
                             "logits) here.")


def dataset_default(flag_values, name):
    """The flag's value, or the dataset's default when unset (None)."""
    value = flag_values[name].value
    return DATASET_DEFAULTS[flag_values.dataset][name] if value is None else value


def _check_float32(flag_values):
    if flag_values.dtype_policy != "float32":
        raise ValueError(f"--dtype_policy={flag_values.dtype_policy}: the recurrent language "
                         "models compute in float32 only; drop the flag.")


def lm_search_config_from_flags(flag_values):
    """(SearchConfig, RecurrentShape) of the recurrent search flags."""
    # pylint: disable=import-outside-toplevel
    from datanas.searching.config import SearchConfig
    from datanas.spaces.darts_rnn.space import RecurrentShape

    _check_float32(flag_values)
    weight_decay = flag_values.weight_decay
    config = SearchConfig(
        epochs=flag_values.epochs, learning_rate=flag_values.learning_rate,
        learning_rate_min=flag_values.learning_rate, momentum=0.0,
        weight_decay=5e-7 if weight_decay is None else weight_decay,
        grad_clip=flag_values.grad_clip, arch_learning_rate=flag_values.arch_learning_rate,
        # DARTS rnn/architect.py: torch.optim.Adam with its default betas
        # (0.9, 0.999), unlike the CNN search's (0.5, 0.999).
        arch_beta_1=0.9, arch_beta_2=0.999,
        arch_weight_decay=flag_values.arch_weight_decay,
        initial_temperature=flag_values.initial_temperature,
        final_temperature=flag_values.final_temperature, seed=flag_values.seed,
        **flags_core.egs_options_from_flags(flag_values))
    num_samples = flag_values.M
    if flag_values.method in ("gdas", "snas_like") and not flag_values["M"].present:
        num_samples = 1
    shape = RecurrentShape(
        num_nodes=flag_values.nodes, hidden_size=flag_values.hidden_size,
        num_samples=num_samples, egs_scope=flag_values.egs_scope,
        dropout=flag_values.dropout,
        dropout_h=0.25 if flag_values.dropout_h is None else flag_values.dropout_h,
        dropout_x=flag_values.dropout_x, dropout_i=flag_values.dropout_i,
        state_rows=max(flag_values.batch_size, flag_values.eval_batch_size),
        cost=flag_values.cost, cost_lambda=flag_values.cost_lambda)
    return config, shape


def lm_train_config_from_flags(flag_values):
    """LMTrainConfig of the language-model training flags."""
    from datanas.training.lm_trainer import LMTrainConfig  # pylint: disable=import-outside-toplevel

    _check_float32(flag_values)
    return LMTrainConfig(
        epochs=flag_values.epochs, learning_rate=flag_values.learning_rate,
        grad_clip=flag_values.grad_clip,
        weight_decay=dataset_default(flag_values, "weight_decay"),
        temporal_weight=flag_values.temporal_weight, bptt=flag_values.bptt,
        nonmono=flag_values.nonmono, seed=flag_values.seed)
