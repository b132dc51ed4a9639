"""Runs the paper's ablations: every search and retraining of a plan.

Each search is an ordinary search run directory under
``<output>/runs/<name>`` with its run identity: a finished run is read back
only if every setting that shapes it (data, budget, model, seed...) is the
same; otherwise the ablation is refused naming the difference.  The
plans, rows, summaries and plots are ``datanas.analysis.ablations``.
"""

import dataclasses
import json
import os
import time

from datanas.analysis.ablations import (ablation_row, ablation_table_name, gap_rule_row,
                                        plan_runs, plot_ablation, rule_row, summarize,
                                        summary_rows, write_csv, write_markdown)
from datanas.engine.run_files import read_json, read_jsonl, write_json_atomic
from datanas.engine.run_identity import (FORMAT_VERSION, IDENTITY_FILE, RunRefused, begin_run,
                                         identity_differences, plan_run)
from datanas.engine.run_lock import release_run_lock
from datanas.spaces import get_space
from datanas.spaces.darts_cnn.genotype import load_genotype

__all__ = ["run_ablation", "ablation_specs"]

#: The search space of every ablation run.
SPACE = "darts_cnn"


def _spec_shape(spec, shape):
    """The supernet settings of one run: the ablation's M (and lam)."""
    shape = dataclasses.replace(shape, num_samples=spec.num_samples)
    if spec.cost_lambda is not None:
        shape = dataclasses.replace(shape, cost=shape.cost or "params",
                                    cost_lambda=spec.cost_lambda)
    return shape


def _spec_config(spec, base_config):
    """The search settings of one run: the shared ones with its seed (and its
    EGS gradient, for a variant such as data_sampled)."""
    config = dataclasses.replace(base_config, seed=spec.seed)
    if spec.egs_gradient is not None:
        config = dataclasses.replace(config, egs_gradient=spec.egs_gradient)
    return config


def _build(spec, dataset, base_config, shape, data, random_candidates):
    """(supernet, config, inputs) of one run, as its search builds them."""
    import keras  # pylint: disable=import-outside-toplevel

    from data_tf.search_inputs import make_search_inputs  # pylint: disable=import-outside-toplevel
    from datanas.searching.runs import build_search  # pylint: disable=import-outside-toplevel

    keras.backend.clear_session()
    keras.utils.set_random_seed(spec.seed)
    model, config = build_search(spec.method, dataset.num_classes, dataset.image_shape,
                                 _spec_config(spec, base_config), _spec_shape(spec, shape),
                                 random_candidates=random_candidates)
    inputs = make_search_inputs(dataset, batch_size=data.batch_size, train_size=data.train_size,
                                validation_fraction=data.validation_fraction,
                                separate_arch_split=config.search_mode == "alternate",
                                seed=spec.seed)
    return model, config, inputs


def _search(spec, dataset, base_config, shape, data, run_dir, *, random_candidates,
            bn_recalibration_batches, verbose):
    from datanas.searching.runs import run_method_search  # pylint: disable=import-outside-toplevel

    model, config, inputs = _build(spec, dataset, base_config, shape, data, random_candidates)
    start = time.time()
    result = run_method_search(spec.method, model, inputs, config, run_dir,
                               random_candidates=random_candidates, verbose=verbose,
                               checkpoint_every_steps=0,
                               bn_recalibration_batches=bn_recalibration_batches,
                               metadata={"dataset": dataset.name, "ablation_run": spec.name})
    seconds = time.time() - start
    if spec.method != "random":   # measured while the supernet is at hand
        _measure_rule_children(run_dir, model, config, inputs, result.final["derivation"],
                               bn_recalibration_batches)
    return result, config, seconds


#: Per-rule children of a search, inherited weights (gap ablation, Table 8).
GAP_RULES_FILE = "gap_rules.json"


def _measure_rule_children(run_dir, model, config, inputs, own_rule, bn_recalibration_batches):
    """Validation accuracy of the child of every derivation rule of the space
    but the search's own (its row has that one), inheriting the supernet's
    weights: as they are and after re-estimating batch-norm statistics
    (``run_search``'s evaluation of its own child, cell by cell; the child
    inside the supernet is weighted as the supernet combines an edge's ops,
    ``space.child_weights``).  Written to ``gap_rules.json``."""
    from datanas.searching.run import _child_evaluation, make_searcher  # pylint: disable=import-outside-toplevel

    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    space = get_space(SPACE)
    searcher = make_searcher(model, inputs, config, tf.distribute.get_strategy())
    valid_data = searcher.distribute(inputs.validation)
    rules = {}
    for rule in space.derivation_rules:
        genotype = None if rule == own_rule else _rule_genotype(run_dir, rule)
        if genotype is None:   # the search's own row, or a rule the search predates
            continue
        child, recalibrated = _child_evaluation(searcher, inputs, valid_data,
                                                space.child_weights(model, genotype),
                                                bn_recalibration_batches)
        rules[rule] = {"child_valid_accuracy": child[searcher.task.headline],
                       "child_valid_accuracy_recalibrated_bn": recalibrated}
    measured = {"derivation": own_rule, "bn_recalibration_batches": bn_recalibration_batches,
                "rules": rules}
    write_json_atomic(os.path.join(run_dir, GAP_RULES_FILE), measured)
    return measured


def _rule_children(spec, run_dir, dataset, base_config, shape, data, random_candidates,
                   bn_recalibration_batches, verbose):
    """``gap_rules.json`` of a finished search; measured from its last
    checkpoint (the supernet at the end of the search) when the search was
    made without it; None when neither is there."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    path = os.path.join(run_dir, GAP_RULES_FILE)
    if os.path.exists(path):
        return read_json(path)
    latest = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    if latest is None:
        return None
    if verbose:
        print(f"{spec.name}: measuring every rule's child from {latest}", flush=True)
    model, config, inputs = _build(spec, dataset, base_config, shape, data, random_candidates)
    tf.train.Checkpoint(model=model).restore(latest).expect_partial()
    own_rule = read_json(os.path.join(run_dir, "search_result.json"))["derivation"]
    return _measure_rule_children(run_dir, model, config, inputs, own_rule,
                                  bn_recalibration_batches)


def _gap_rows(spec, run_dir, row, measured, verbose):
    """The gap rows of the other rules' children of one search (Table 8),
    in the space's order; a rule not measured has empty child columns, and
    a rule whose cell was not retrained (--retrain_rule) no retraining
    columns; a rule the search predates (no ``genotype_<rule>.json``) has
    no row."""

    if measured is None and verbose:
        print(f"{spec.name}: no {GAP_RULES_FILE}: only its own rule's child is measured.",
              flush=True)
    search_row = {k: v for k, v in row.items() if k not in RETRAIN_COLUMNS}
    rows = []
    for rule in get_space(SPACE).derivation_rules:
        if rule == row["derivation"]:
            continue
        genotype = _rule_genotype(run_dir, rule)
        if genotype is None:
            if verbose:
                print(f"{spec.name}: no {_rule_files(rule)[0]} (the search predates that "
                      "rule): no row for it.", flush=True)
            continue
        values = (measured or {}).get("rules", {}).get(rule, {})
        out = gap_rule_row(search_row, rule, genotype,
                           values.get("child_valid_accuracy"),
                           values.get("child_valid_accuracy_recalibrated_bn"))
        # The retraining columns are this rule's own cell's (--retrain_rule), or none:
        # never those of the method's cell.
        retrained = os.path.join(run_dir, _rule_files(rule)[1])
        if os.path.exists(retrained):
            saved = read_json(retrained)
            out.update({k: saved[k] for k in RETRAIN_COLUMNS if k in saved})
        rows.append(out)
    return rows


# The columns a retraining adds to a row (_retrain writes exactly these).
RETRAIN_COLUMNS = ("parameters", "multiply_adds", "retrain_valid_accuracy",
                   "retrain_test_accuracy", "test_examples", "retrain_seconds",
                   "retrain_settings")


def _retrain(genotype, dataset, retrain, seed, run_dir, verbose):
    """Retrains `genotype` from scratch at the `retrain` budget: its
    RETRAIN_COLUMNS."""
    import keras  # pylint: disable=import-outside-toplevel

    from data_tf.train_inputs import make_train_inputs  # pylint: disable=import-outside-toplevel
    from datanas.core.model_stats import count_multiply_adds, count_parameters  # pylint: disable=import-outside-toplevel
    from datanas.spaces import get_space  # pylint: disable=import-outside-toplevel
    from datanas.training.trainer import TrainConfig, run_training  # pylint: disable=import-outside-toplevel

    start = time.time()
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    inputs = make_train_inputs(dataset, batch_size=retrain.batch_size,
                               train_size=retrain.train_size, seed=seed)
    model = get_space("darts_cnn").final_network(
        genotype, setting="cifar", num_classes=dataset.num_classes,
        init_channels=retrain.init_channels, layers=retrain.layers, auxiliary=False)
    model.build((None,) + dataset.image_shape)
    config = TrainConfig(epochs=retrain.epochs, learning_rate=retrain.learning_rate,
                         drop_path_prob=0.0, auxiliary_weight=0.0, seed=seed)
    # The test split is evaluated once, after the last epoch; validation every epoch.
    results = run_training(model, inputs.train, inputs.eval_sets(include_test=False), config,
                           run_dir, steps_per_epoch=inputs.steps_per_epoch,
                           image_shape=dataset.image_shape, select_on="valid",
                           verbose=verbose, global_batch_size=retrain.batch_size,
                           final_eval_sets=inputs.test_set())
    final = results["final"]
    columns = {"parameters": count_parameters(model),
               "multiply_adds": count_multiply_adds(model, dataset.image_shape),
               "retrain_valid_accuracy": final["valid_accuracy"],
               "retrain_test_accuracy": final["test_accuracy"],
               "test_examples": inputs.sizes()["test"],
               "retrain_seconds": round(time.time() - start, 1),
               "retrain_settings": dataclasses.asdict(retrain)}
    return {key: columns[key] for key in RETRAIN_COLUMNS}


def _resolved(spec, base_config, shape, random_candidates):
    """What the run's method makes of the shared settings: its supernet
    settings and its full SearchConfig (search mode, temperatures,
    estimator gradient, edge combination, derivation...)."""
    from datanas.searching.runs import resolve_method  # pylint: disable=import-outside-toplevel

    from datanas.searching.runs import random_epochs_per_candidate  # pylint: disable=import-outside-toplevel

    network, config = resolve_method(spec.method, _spec_config(spec, base_config),
                                     _spec_shape(spec, shape),
                                     random_candidates=random_candidates)
    resolved = {"network": dict(network), "config": dataclasses.asdict(config)}
    if spec.method == "random":   # the search's epochs, shared out over the candidates
        resolved["epochs_per_candidate"] = random_epochs_per_candidate(config.epochs,
                                                                       random_candidates)
    return resolved


def _run_identity(spec, dataset, base_config, shape, data, random_candidates,
                  bn_recalibration_batches, image_size=None):
    """Every setting that shapes one ablation search (see engine.run_identity),
    including what the method resolves them to (``resolved``): one shared
    base config serves every method, so it alone cannot tell two versions of
    a method apart.  `image_size` (images resized to it) is recorded only when
    set, so runs made at the data's own size keep their identity."""
    search = dataclasses.asdict(_spec_config(spec, base_config))
    for name in ("egs_gradient", "edge_combine"):   # None = each method's: see resolved
        if search.get(name) is None:
            search.pop(name, None)
    run = dataclasses.asdict(spec)
    if run.get("egs_gradient") is None:   # the shared config's: as runs before variants
        run.pop("egs_gradient", None)
    resized = {} if image_size is None else {"image_size": image_size}
    return {"format": FORMAT_VERSION, "run": run,
            "dataset": dataset.name, **resized, "search": search,
            "shape": dataclasses.asdict(_spec_shape(spec, shape)),
            "data": dataclasses.asdict(data), "random_candidates": random_candidates,
            "bn_recalibration_batches": bn_recalibration_batches,
            "resolved": _resolved(spec, base_config, shape, random_candidates)}


#: Identity keys not compared.  The label is how a table names the run
#: ("data_M7" in the seeds table, plain M=7 in the M table): one search serves
#: both.  The shared config's temperatures are what the command asked for;
#: what a run used is ``resolved.config``'s (each method's own schedule when
#: the command sets none), and DARTS' softmax has no temperature, so its
#: earlier runs, which recorded the asked 5 -> 1, are read back either way.
IDENTITY_IGNORED = ("run.label", "search.initial_temperature", "search.final_temperature")


#: Methods whose resolved settings are what they were before runs recorded
#: them: a run of theirs without ``resolved`` is read back.  Every other
#: method changed (DATA's gradient, edge mean and derivation; GDAS' own
#: protocol; random search's equal-cost budget), so its earlier runs are
#: refused, naming the difference, rather than read back as the new method.
UNCHANGED_METHODS = ("darts",)


def _refuse_earlier_method_version(run_dir, spec):
    """One line for a finished or interrupted run of a method that changed
    since (it has no ``resolved``): its results are not the method's now."""
    path = os.path.join(run_dir, IDENTITY_FILE)
    if spec.method in UNCHANGED_METHODS or not os.path.isfile(path):
        return
    try:
        with open(path) as handle:
            saved = json.load(handle)
    except (OSError, ValueError):
        return   # plan_run names a damaged identity file
    if isinstance(saved, dict) and "resolved" not in saved:
        raise RunRefused(
            f"{run_dir} was searched by an earlier version of method {spec.method!r} (before "
            "its settings were recorded as resolved; docs/history/ablations_sampled_sum.md says what it measured), "
            "so it is not read back as this method's run; use a new --model_dir.")


def _legacy_defaults(spec, identity):
    """plan_run's added_defaults: a run written before ``resolved`` counts as
    having the current resolution only for UNCHANGED_METHODS."""
    if spec.method not in UNCHANGED_METHODS:
        return None

    def flatten(value, prefix):
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                out.update(flatten(item, f"{prefix}.{key}"))
            return out
        return {prefix: value}
    return flatten(identity["resolved"], "resolved")


def _search_seconds(run_dir, measured):
    """The search's whole cost: its epochs' wall-clock (``epoch_seconds`` of
    the run's metrics, and of each random-search candidate's), summed over
    every process that worked on it -- a search resumed after a kill is
    counted in full, not from the resume (an epoch cut by the kill counts
    from its resume).  `measured` (this process's time) when no epoch was
    recorded."""
    paths = [os.path.join(run_dir, "metrics.jsonl")]
    candidates = os.path.join(run_dir, "candidates")
    if os.path.isdir(candidates):
        paths += [os.path.join(candidates, name, "metrics.jsonl")
                  for name in sorted(os.listdir(candidates))]
    seconds = [record["epoch_seconds"] for path in paths if os.path.exists(path)
               for record in read_jsonl(path) if "epoch_seconds" in record]
    return round(float(sum(seconds)), 1) if seconds else measured


def _rule_files(rule):
    """(genotype file, row file, retraining directory) of a derivation rule's
    cell in a search run; None = the method's own cell."""
    if rule is None:
        return "genotype.json", "ablation_row.json", "retrain"
    return f"genotype_{rule}.json", f"ablation_row_{rule}.json", f"retrain_{rule}"


def _rule_genotype(run_dir, rule):
    """The genotype a search wrote for `rule`; None for a search older than
    the rule (no such file)."""
    path = os.path.join(run_dir, _rule_files(rule)[0])
    return load_genotype(path) if os.path.exists(path) else None


def _older_than_the_rule(spec, run_dir, rule):
    """The ValueError for a finished search without `rule`'s genotype file:
    it predates the rule."""
    return ValueError(
        f"--retrain_rule={rule}: {spec.name}'s search in {run_dir} has no "
        f"{_rule_files(rule)[0]}; it predates that rule. Search it again in a new "
        f"--model_dir, or drop {spec.method} from --methods.")


def _refuse_searches_older_than_the_rule(specs, output_dir, rule):
    """Raises _older_than_the_rule for the first finished search of `specs`
    without `rule`'s genotype file, before anything is searched or retrained
    (finding it mid-table would come after hours of other runs' work)."""
    genotype_file = _rule_files(rule)[0]
    for spec in specs:
        run_dir = os.path.join(output_dir, "runs", spec.name)
        if (spec.method != "random" and os.path.exists(os.path.join(run_dir, "ablation_row.json"))
                and not os.path.exists(os.path.join(run_dir, genotype_file))):
            raise _older_than_the_rule(spec, run_dir, rule)


def _rule_row(run_dir, search_row, rule, genotype):
    """The row of `rule`'s `genotype`: the search row restated for that cell
    (datanas.analysis.ablations.rule_row), with its retraining's columns when
    it was retrained earlier."""
    _, row_file, _ = _rule_files(rule)
    row = rule_row({k: v for k, v in search_row.items() if k not in RETRAIN_COLUMNS}, rule,
                   genotype)
    path = os.path.join(run_dir, row_file)
    if os.path.exists(path):
        saved = read_json(path)
        row.update({k: saved[k] for k in RETRAIN_COLUMNS if k in saved})
        if row != saved:   # written by an earlier version: its search columns corrected
            write_json_atomic(path, row)
    return row


def _check_same_retrain(run_dir, row, retrain):
    differences = identity_differences(row.get("retrain_settings", {}),
                                       dataclasses.asdict(retrain))
    if differences:
        raise RunRefused(f"{run_dir} was retrained with other settings: " + "; ".join(
            f"{key}: run {old!r}, now {new!r}" for key, old, new in differences)
            + ". Use a new output directory for another retraining budget.")


def ablation_specs(ablation, *, base_config, shape, methods=None, m_values=None, seeds=(0,),
                   retrain=None, lambda_values=(1.0, 0.75, 0.5, 0.25), retrain_rule=None):
    """The searches of an ablation (see run_ablation for the arguments), every
    setting checked before anything runs or is written.

    Raises:
      ValueError: one line naming the bad setting.
    """
    from datanas.searching.runs import resolve_method  # pylint: disable=import-outside-toplevel

    methods = list(methods or ("data", "darts", "gdas"))
    m_values = list(m_values or range(1, len(shape.primitives) + 1))
    if ablation in ("num_samples", "seeds", "cost_lambda") and retrain is None:
        raise ValueError(f"the {ablation} ablation retrains every derived network; pass "
                         "RetrainSettings.")
    specs = plan_runs(ablation, methods=methods, num_samples=shape.num_samples,
                      m_values=m_values, seeds=list(seeds),
                      lambda_values=list(lambda_values or ()),
                      cost=shape.cost if shape.cost not in (None, "none") else "params")
    if retrain_rule is None:
        return specs
    if ablation not in ("num_samples", "seeds"):
        raise ValueError(f"--retrain_rule applies to the num_samples and seeds ablations "
                         f"(they retrain); got ablation {ablation!r}.")
    rules = get_space(SPACE).derivation_rules
    if retrain_rule not in rules:
        raise ValueError(f"--retrain_rule must be a derivation rule of the {SPACE} space "
                         f"({', '.join(rules)}); got {retrain_rule!r}.")
    for spec in specs:
        name = spec.label or spec.method
        if spec.method == "random":   # the reference row: its own (best) cell
            continue
        _, config = resolve_method(spec.method, _spec_config(spec, base_config),
                                   _spec_shape(spec, shape))
        if config.derivation == retrain_rule:
            raise ValueError(f"--retrain_rule={retrain_rule}: {name}'s own genotype.json is "
                             f"already its {retrain_rule}-rule cell (the ablation without "
                             f"--retrain_rule retrains it); drop {name} from --methods.")
    return specs


def run_ablation(ablation, dataset, output_dir, *, base_config, shape, data, methods=None,
                 m_values=None, seeds=(0,), retrain=None, random_candidates=4,
                 bn_recalibration_batches=20, lambda_values=(1.0, 0.75, 0.5, 0.25),
                 retrain_rule=None, image_size=None, finished_only=False, verbose=1):
    """Runs (or resumes) every search of `ablation` and writes CSV + PNG.

    Args:
      ablation: "gap", "num_samples", "seeds" or "cost_lambda".
      dataset: an ImageDataset (data_tf.image_datasets).
      output_dir: receives runs/<name>/ (one search run each),
        <ablation>.csv, <ablation>.png and <ablation>_summary.json.
      base_config: SearchConfig shared by every run (seed replaced per run).
      shape: SupernetShape shared by every run (M replaced per run).
      data: SearchData.
      image_size: the side `dataset`'s images were resized to (None: their
        own size); part of each run's identity when set.
      methods: methods compared (gap: data, darts, gdas; seeds: any).
      m_values: M values of the num_samples ablation (default 1..K).
      retrain: RetrainSettings; the num_samples and seeds ablations retrain
        every derived network at this budget (required for them).
      random_candidates: candidates of method 'random'.
      bn_recalibration_batches: batches re-estimating the child's batch-norm
        statistics for the gap's second column (0 = skip).
      lambda_values: lam of the cost_lambda ablation (cost: shape.cost, default
        params).
      retrain_rule: None, or a derivation rule of the space (darts_cnn:
        node_sample, node_infer, sample, inclusion, darts) whose genotype
        (``genotype_<rule>.json``) of each search is retrained instead of
        ``genotype.json`` -- the same searches, another cell (e.g. DATA's
        top-2 cell, the size of DARTS' and GDAS').  Rows go to
        ``ablation_row_<rule>.json``, retrainings to ``retrain_<rule>/``,
        tables to ``<ablation>_<rule>_rule.*``.  Random search, which has
        no rules, keeps its own cell there (the reference of Welch's t).
      finished_only: search, retrain and measure nothing: the table is
        made of the runs already finished (searched and, for the seeds and
        M tables, retrained), and every other run is named in the
        summary's ``not_finished`` (ValueError if none is finished).

    The gap ablation has a row per derivation rule of the space for every
    search: its own rule's child (the search's row) and every other rule's
    (``gap_rules.json``, measured at the end of the search, or from its
    last checkpoint for a search made without it).  Beside the per-run
    CSV, every table's summary is written as ``<table>_summary.json``,
    ``.csv`` and ``.md``: per-seed values, mean, std, the standard error of
    one test reading and, in a table with random search, Welch's t of every
    other method against it.
    Returns:
      (rows, summary).
    """
    specs = ablation_specs(ablation, base_config=base_config, shape=shape, methods=methods,
                           m_values=m_values, seeds=seeds, retrain=retrain,
                           lambda_values=lambda_values, retrain_rule=retrain_rule)
    table = ablation_table_name(ablation, retrain_rule)
    if retrain_rule is not None and not finished_only:
        _refuse_searches_older_than_the_rule(specs, output_dir, retrain_rule)
    os.makedirs(output_dir, exist_ok=True)
    rows, not_finished = [], []

    def skip(index, spec, what):
        not_finished.append(spec.name)
        if verbose:
            print(f"[{index + 1}/{len(specs)}] {spec.name}: {what}; left out of the table "
                  "(finished_only).", flush=True)

    for index, spec in enumerate(specs):
        run_dir = os.path.join(output_dir, "runs", spec.name)
        row_path = os.path.join(run_dir, "ablation_row.json")
        # A run is reused only if every setting that shapes it is the same.
        # The label is how a table names the run ("data_M7" in the seeds table,
        # plain M=7 in the M table): one search serves both.
        identity = _run_identity(spec, dataset, base_config, shape, data, random_candidates,
                                 bn_recalibration_batches, image_size)
        _refuse_earlier_method_version(run_dir, spec)
        plan = plan_run(run_dir, identity, result_file="ablation_row.json",
                        ignored=IDENTITY_IGNORED, added_defaults=_legacy_defaults(spec, identity))
        row = None
        if finished_only and plan.status != "finished":
            skip(index, spec, "not searched" if plan.status == "new" else "search not finished")
            continue
        if plan.status == "finished":
            row = read_json(row_path)
            if verbose:
                print(f"[{index + 1}/{len(specs)}] {spec.name}: searched earlier with the same "
                      "settings, read back.", flush=True)
        else:
            begin_run(plan)
            if verbose:
                print(f"[{index + 1}/{len(specs)}] search {spec.name} (method {spec.method}, "
                      f"M={spec.num_samples}, seed {spec.seed})", flush=True)
            result, config, seconds = _search(spec, dataset, base_config, shape, data, run_dir,
                                              random_candidates=random_candidates,
                                              bn_recalibration_batches=bn_recalibration_batches,
                                              verbose=verbose)
            row = ablation_row(spec, result, config, seconds)
        # A new row, or one written before search_seconds summed every
        # process's epochs (corrected in place; nothing else changes).
        seconds = _search_seconds(run_dir, row["search_seconds"])
        if plan.status != "finished" or seconds != row["search_seconds"]:
            row["search_seconds"] = seconds
            write_json_atomic(row_path, row)
        row["method"] = spec.label or spec.method   # this table's name for the run
        genotype = None   # this table's cell: read once, when a row or a retraining needs it
        genotype_file, row_file, retrain_dir = _rule_files(
            None if spec.method == "random" else retrain_rule)
        if retrain_rule is not None and spec.method != "random":
            genotype = _rule_genotype(run_dir, retrain_rule)
            if genotype is None and not finished_only:
                raise _older_than_the_rule(spec, run_dir, retrain_rule)
            if genotype is None:
                skip(index, spec, f"the search predates {genotype_file}")
                continue
            row = _rule_row(run_dir, row, retrain_rule, genotype)
        if ablation != "gap" and "retrain_test_accuracy" in row:
            _check_same_retrain(run_dir, row, retrain)
        if ablation != "gap" and "retrain_test_accuracy" not in row and finished_only:
            skip(index, spec, "its cell is not retrained")
            continue
        if ablation != "gap" and "retrain_test_accuracy" not in row:
            if verbose:
                print(f"[{index + 1}/{len(specs)}] retrain {spec.name}: {retrain.layers} cells, "
                      f"C={retrain.init_channels}, {retrain.epochs} epoch(s)", flush=True)
            if genotype is None:
                genotype = load_genotype(os.path.join(run_dir, genotype_file))
            row.update(_retrain(genotype, dataset, retrain, spec.seed,
                                os.path.join(run_dir, retrain_dir), verbose))
            write_json_atomic(os.path.join(run_dir, row_file), row)
        rows.append(row)
        if ablation == "gap":
            gap_rules = os.path.join(run_dir, GAP_RULES_FILE)
            if not finished_only:
                measured = _rule_children(spec, run_dir, dataset, base_config, shape, data,
                                          random_candidates, bn_recalibration_batches, verbose)
            else:
                measured = read_json(gap_rules) if os.path.exists(gap_rules) else None
            rows.extend(_gap_rows(spec, run_dir, row, measured, verbose))
        release_run_lock(run_dir)   # done: another process may read or extend it
    if not rows:
        raise ValueError(f"no run of this {table} table is finished in {output_dir} "
                         f"(finished_only): {', '.join(not_finished)}.")
    summary = summarize(ablation, rows)
    if finished_only:
        summary["not_finished"] = not_finished
    write_csv(os.path.join(output_dir, f"{table}.csv"), rows)
    write_json_atomic(os.path.join(output_dir, f"{table}_summary.json"), summary)
    table_rows = summary_rows(ablation, summary)
    write_csv(os.path.join(output_dir, f"{table}_summary.csv"), table_rows)
    write_markdown(os.path.join(output_dir, f"{table}_summary.md"), table_rows,
                   f"{table}: {summary.get('metric', 'retrain_test_accuracy')}")
    plot_ablation(ablation, rows, summary, os.path.join(output_dir, f"{table}.png"))
    return rows, summary


