"""The paper's ablations, scaled to a small budget: plans, rows, tables, plots.

The runner that executes the searches and retrainings is
``trainers/ablation_runner.py``; this module holds the pure pieces.

* ``gap`` (paper Table 8): validation accuracy of the supernet at the end of
  search vs. the derived child inheriting the supernet weights (no
  fine-tuning), per method (DATA, DARTS, GDAS) and per derivation rule of
  the space: the method's own rule's child (DATA: node_sample; DARTS, GDAS:
  top-2) and every other rule's child of the same supernet.  Also after
  re-estimating the child's batch-norm statistics, which isolates the part
  of the gap that is only stale statistics.
* ``num_samples`` (Table 5): DATA with M = 1..K; parameters of the derived
  network and its accuracy after retraining at a fixed small budget.
* ``seeds`` (Table 7 / Figure 3b): several seeds per method; per-seed
  values, mean and std of the retrained accuracy, the standard error of one
  test reading, and Welch's t of every method against random search (at
  the search's cost) when the table has it.
* ``cost_lambda`` (DARTS-EGS preprint Eq. 5): DATA with resource-aware
  sampling at several lam (1 = effectiveness only); parameters and
  multiply-adds of the derived networks against their retrained accuracy.

Every run is an ordinary search run directory under ``<output>/runs/<name>``
(resumable: finished runs are read back, not repeated; ablations writing to
the same output directory share runs of the same method, M and seed).  Each ablation
writes ``<ablation>.csv`` and ``<ablation>.png`` into the output directory.
Architectures are selected on the validation split carved from the training
images; retrained networks report validation and test accuracy (test once,
never used for a choice).
"""

import csv
import dataclasses
import math
import re

import numpy as np


__all__ = ["ABLATIONS", "RunSpec", "RetrainSettings", "SearchData", "plan_runs", "ablation_row",
           "summarize", "write_csv", "plot_ablation", "parse_method", "ablation_table_name",
           "rule_row", "gap_rule_row", "welch_t", "summary_rows", "write_markdown"]

ABLATIONS = ("gap", "num_samples", "seeds", "cost_lambda")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One search of an ablation."""
    name: str
    method: str
    num_samples: int
    seed: int
    # lam of resource-aware sampling (cost_lambda ablation); None = not used.
    cost_lambda: float | None = None
    # The method's name in tables when it is not `method` (e.g. "data_M7" in a
    # seeds table comparing DATA M=4 and M=7); None = `method`.
    label: str | None = None
    # The EGS gradient this run searches with when it is not the shared
    # config's (e.g. "sampled" for "data_sampled"); None = the shared one's.
    egs_gradient: str | None = None


@dataclasses.dataclass(frozen=True)
class RetrainSettings:
    """Fixed small budget for retraining derived networks from scratch."""
    layers: int = 6
    init_channels: int = 16
    epochs: int = 5
    batch_size: int = 64
    learning_rate: float = 0.05
    train_size: int | None = None


#: --methods tokens of DATA variants: "data_M<m>" (another M than the
#: ablation's), "data_sampled" and "data_sampled_M<m>" (the sampled
#: gradient: only the drawn ops computed, as the package's earlier DATA).
_DATA_VARIANT = re.compile(r"data(_sampled)?(?:_M([0-9]+))?")


def parse_method(token, num_samples):
    """(method, M, label, egs_gradient) of a --methods entry: a search
    method, or a DATA variant -- "data_M<m>" for DATA with another M than the
    ablation's (so one seeds table can hold DATA M=4 and M=7), and
    "data_sampled" / "data_sampled_M<m>" for DATA searching with the sampled
    gradient (egs_gradient None: the shared config's)."""
    from datanas.searching.methods import SEARCH_METHODS   # pylint: disable=import-outside-toplevel
    if token in SEARCH_METHODS:
        return token, (1 if token == "gdas" else num_samples), None, None
    match = _DATA_VARIANT.fullmatch(token)
    if match and token != "data" and (match.group(2) is None or int(match.group(2)) >= 1):
        samples = num_samples if match.group(2) is None else int(match.group(2))
        return "data", samples, token, ("sampled" if match.group(1) else None)
    raise ValueError(f"unknown method {token!r}; allowed: {', '.join(SEARCH_METHODS)}, "
                     "data_M<m> (DATA with M=m, e.g. data_M7), data_sampled or "
                     "data_sampled_M<m> (DATA with the sampled gradient).")


#: Methods with a supernet, whose search/child gap Table 8 measures.
GAP_METHODS = ("data", "darts", "gdas")


def plan_runs(ablation, *, methods, num_samples, m_values, seeds, lambda_values=None,
              cost="params"):
    """The searches an ablation needs (names are stable run directories)."""
    if ablation not in ABLATIONS:
        raise ValueError(f"ablation must be one of {', '.join(ABLATIONS)}; got {ablation!r}.")
    if not seeds:
        raise ValueError("at least one seed is needed.")
    if ablation == "cost_lambda":
        if not lambda_values or any(not 0.0 <= lam <= 1.0 for lam in lambda_values):
            raise ValueError(f"lambda values must be in [0, 1], got {lambda_values}.")
        return [RunSpec(f"data_M{num_samples}_{cost}_lam{lam:g}_seed{seeds[0]}", "data",
                        num_samples, seeds[0], cost_lambda=float(lam))
                for lam in lambda_values]

    def name(method, samples, seed, egs_gradient=None):
        # Shared names let the ablations reuse each other's searches when they
        # write into the same directory (e.g. gap's DATA run is seeds' seed 0).
        if method == "data":
            variant = "" if egs_gradient is None else f"_{egs_gradient}"
            return f"data{variant}_M{samples}_seed{seed}"
        return f"{method}_seed{seed}"

    if ablation == "gap":
        unknown = [m for m in methods if parse_method(m, num_samples)[0] not in GAP_METHODS]
        if unknown:
            raise ValueError(f"the gap ablation compares supernet and child of gradient-based "
                             f"methods ({', '.join(GAP_METHODS)}, or data_M<m>); got {unknown}.")
    if ablation == "num_samples":
        if not m_values or any(m < 1 for m in m_values):
            raise ValueError(f"M values must be integers >= 1, got {m_values}.")
        return [RunSpec(name("data", m, s), "data", m, s) for m in m_values for s in seeds]
    specs = []
    for token in methods:
        method, samples, label, egs_gradient = parse_method(token, num_samples)
        specs.extend(RunSpec(name(method, samples, s, egs_gradient), method, samples, s,
                             label=label, egs_gradient=egs_gradient)
                     for s in seeds)
    return specs


@dataclasses.dataclass(frozen=True)
class SearchData:
    """How the search splits the dataset (same for every run of an ablation)."""
    batch_size: int = 64
    train_size: int | None = 5000
    validation_fraction: float = 0.1


def ablation_table_name(ablation, retrain_rule=None):
    """File stem of an ablation's outputs: "seeds", or "seeds_darts_rule" when
    the searches' genotypes of another derivation rule are retrained."""
    return ablation if retrain_rule is None else f"{ablation}_{retrain_rule}_rule"


def rule_row(row, rule, genotype):
    """The search `row` restated for the genotype its `rule` derived: the
    method gets a ``_<rule>_rule`` suffix, the cell columns are that cell's,
    and the inherited-weight child columns (measured for the method's own
    cell) are left empty; the supernet's column stays."""
    pairs = [len(node) for node in genotype.normal]
    return {**row, "method": f"{row['method']}_{rule}_rule", "derivation": rule,
            "skip_connects_normal": genotype.num_skip_connects("normal"),
            "pairs_per_node_normal": float(np.mean(pairs)),
            "child_valid_accuracy": None, "child_valid_accuracy_recalibrated_bn": None,
            "gap": None, "gap_recalibrated_bn": None}


def gap_rule_row(row, rule, genotype, child, recalibrated):
    """The gap row (Table 8) of the child `rule` derives from the search of
    `row`: that cell's inherited-weight validation accuracy `child` and its
    accuracy after re-estimating batch-norm statistics `recalibrated` (None
    when not measured), against the same supernet."""
    out = rule_row(row, rule, genotype)
    out.update({"child_valid_accuracy": child, "child_valid_accuracy_recalibrated_bn":
                recalibrated})
    supernet = out.get("supernet_valid_accuracy")
    for key, gap_key in (("child_valid_accuracy", "gap"),
                         ("child_valid_accuracy_recalibrated_bn", "gap_recalibrated_bn")):
        out[gap_key] = (supernet - out[key] if supernet is not None and out[key] is not None
                        else None)
    return out


def ablation_row(spec, result, config, seconds):
    """One CSV row of a finished search (gap columns computed here)."""
    final = result.final
    genotype = result.genotype
    pairs = [len(node) for node in genotype.normal]
    row = {"run": spec.name, "method": spec.label or spec.method, "M": spec.num_samples,
           "seed": spec.seed,
           **({} if spec.cost_lambda is None else {
               "cost_lambda": spec.cost_lambda, "cost": final["cost"]["metric"],
               "expected_child_cost": final["cost"]["expected_child_cost"]}),
           "derivation": "best_on_valid" if spec.method == "random" else config.derivation,
           "search_seconds": round(seconds, 1),
           "skip_connects_normal": genotype.num_skip_connects("normal"),
           "pairs_per_node_normal": float(np.mean(pairs))}
    if spec.method == "random":
        row.update({"supernet_valid_accuracy": None,
                    "child_valid_accuracy": final["best_valid_accuracy"],
                    "child_valid_accuracy_recalibrated_bn": None})
    else:
        row.update({"supernet_valid_accuracy": final["supernet_valid_accuracy"],
                    "child_valid_accuracy": final["child_valid_accuracy_inherited_weights"],
                    "child_valid_accuracy_recalibrated_bn":
                        final["child_valid_accuracy_recalibrated_bn"]})
    for key in ("child_valid_accuracy", "child_valid_accuracy_recalibrated_bn"):
        gap_key = "gap" if key == "child_valid_accuracy" else "gap_recalibrated_bn"
        row[gap_key] = (row["supernet_valid_accuracy"] - row[key]
                        if row["supernet_valid_accuracy"] is not None and row[key] is not None
                        else None)
    return row


def _values(rows, key):
    """The rows' values of `key`, rows without one (None or absent) left out."""
    return [row[key] for row in rows if row.get(key) is not None]


def _mean(rows, key):
    values = _values(rows, key)
    return float(np.mean(values)) if values else None


def _spread(rows, key):
    """Runs, mean and sample standard deviation of `key` (None for one run:
    one run has no spread to report, and a 0 would read as none measured)."""
    values = _values(rows, key)
    return {"runs": len(values), "mean": float(np.mean(values)) if values else None,
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else None}


def _test_standard_error(rows):
    """The standard error of one run's test accuracy p measured on n test
    images, sqrt(p (1 - p) / n), averaged over `rows` (None without n): the
    difference two seeds' accuracies show by the test sample alone."""
    errors = [np.sqrt(row["retrain_test_accuracy"] * (1 - row["retrain_test_accuracy"])
                      / row["test_examples"]) for row in rows
              if row.get("test_examples") and row.get("retrain_test_accuracy") is not None]
    return float(np.mean(errors)) if errors else None


def welch_t(values, reference):
    """Welch's t of mean(values) - mean(reference) and its Welch-Satterthwaite
    degrees of freedom: (None, None) when either has fewer than two values
    or neither spreads."""
    a, b = np.asarray(values, np.float64), np.asarray(reference, np.float64)
    if len(a) < 2 or len(b) < 2:
        return None, None
    var_a, var_b = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if var_a + var_b == 0:
        return None, None
    t = (a.mean() - b.mean()) / math.sqrt(var_a + var_b)
    dof = (var_a + var_b) ** 2 / (var_a ** 2 / (len(a) - 1) + var_b ** 2 / (len(b) - 1))
    return float(t), float(dof)


def _per_seed(rows, key):
    """{"seeds": [...], "values": [...]} of the rows with a `key` value."""
    kept = [row for row in rows if row.get(key) is not None]
    return {"seeds": [row.get("seed") for row in kept], "values": [row[key] for row in kept]}


#: The method every other one of a seeds table is compared with (Welch's t).
REFERENCE_METHOD = "random"


def summarize(ablation, rows):
    """Per-method (gap, seeds), per-M (num_samples) or per-lam (cost_lambda) aggregates."""
    if ablation == "cost_lambda":
        return {"by_lambda": [{key: row.get(key) for key in
                               ("cost_lambda", "cost", "parameters", "multiply_adds",
                                "expected_child_cost", "pairs_per_node_normal",
                                "skip_connects_normal", "retrain_valid_accuracy",
                                "retrain_test_accuracy", "search_seconds", "retrain_seconds")}
                              for row in rows]}
    if ablation == "num_samples":
        by_m = []
        for m in dict.fromkeys(row["M"] for row in rows):
            group = [row for row in rows if row["M"] == m]
            by_m.append({"M": m, **_spread(group, "retrain_test_accuracy"),
                         **_per_seed(group, "retrain_test_accuracy"),
                         "valid_mean": _mean(group, "retrain_valid_accuracy"),
                         "test_standard_error": _test_standard_error(group),
                         **{key: _mean(group, key) for key in (
                             "parameters", "pairs_per_node_normal", "skip_connects_normal")}})
        return {"metric": "retrain_test_accuracy", "by_M": by_m}
    key = "gap" if ablation == "gap" else "retrain_test_accuracy"
    out = {}
    for method in dict.fromkeys(row["method"] for row in rows):
        group = [row for row in rows if row["method"] == method]
        entry = {**_spread(group, key), **_per_seed(group, key)}
        if ablation == "gap":
            entry["derivation"] = group[0].get("derivation")
            entry.update({name: _mean(group, name) for name in (
                "supernet_valid_accuracy", "child_valid_accuracy",
                "child_valid_accuracy_recalibrated_bn", "gap_recalibrated_bn")})
        else:
            entry["valid_mean"] = _mean(group, "retrain_valid_accuracy")
            entry["test_standard_error"] = _test_standard_error(group)
        out[method] = entry
    if ablation != "gap" and REFERENCE_METHOD in out:
        reference = out[REFERENCE_METHOD]["values"]
        for method, entry in out.items():
            if method != REFERENCE_METHOD:
                entry["welch_t_vs_random"], entry["welch_dof_vs_random"] = welch_t(
                    entry["values"], reference)
    return {"metric": key, "by_method": out}


def summary_rows(ablation, summary):
    """The summary as table rows (one per method, M or lam): per-seed values,
    mean, std, the standard error of one test reading and Welch's t against
    random where the table has them."""
    if ablation == "cost_lambda":
        return [dict(entry) for entry in summary["by_lambda"]]
    entries = (summary["by_M"] if ablation == "num_samples"
               else [{"method": method, **entry}
                     for method, entry in summary["by_method"].items()])
    rows = []
    for entry in entries:
        row = {key: value for key, value in entry.items() if key not in ("seeds", "values")}
        row["per_seed"] = " ".join(f"{seed}:{value:.4f}" for seed, value in
                                   zip(entry["seeds"], entry["values"]))
        rows.append(row)
    return rows


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def write_markdown(path, rows, title):
    """`rows` (summary_rows) as a Markdown table under `title`."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = [f"# {title}", "", "| " + " | ".join(columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(key)) for key in columns) + " |" for row in rows]
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")


def write_csv(path, rows):
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: ("" if row.get(key) is None else row.get(key))
                             for key in columns})


def plot_ablation(ablation, rows, summary, path):
    """Writes the ablation's figure (needs matplotlib: pip install datanas[plots])."""
    try:
        import matplotlib  # pylint: disable=import-outside-toplevel
    except ImportError as error:
        raise ImportError("plots need matplotlib: pip install 'datanas[plots]'") from error
    matplotlib.use("Agg")
    from matplotlib import pyplot  # pylint: disable=import-outside-toplevel

    two = ablation in ("num_samples", "cost_lambda")
    figure, axes = pyplot.subplots(1, 2 if two else 1, figsize=(9 if two else 5.5, 3.8))
    if ablation == "cost_lambda":
        for axis, key, label in ((axes[0], "parameters", "parameters (M)"),
                                 (axes[1], "multiply_adds", "multiply-adds per image (M)")):
            x = [r[key] / 1e6 for r in rows]
            axis.plot(x, [r["retrain_valid_accuracy"] for r in rows], "o", label="valid")
            axis.plot(x, [r["retrain_test_accuracy"] for r in rows], "s", label="test")
            for r, value in zip(rows, x):
                axis.annotate(f"lam={r['cost_lambda']:g}", (value, r["retrain_test_accuracy"]),
                              fontsize=7, textcoords="offset points", xytext=(4, -10))
            axis.set_xlabel(f"{label} of the derived network")
            axis.set_ylabel("accuracy after retraining")
        axes[0].legend()
        figure.suptitle(f"Resource-aware EGS ({rows[0]['cost']} credit): accuracy vs. cost")
    elif ablation == "gap":
        methods = list(summary["by_method"])
        x = np.arange(len(methods))
        series = [("supernet (end of search)", "supernet_valid_accuracy"),
                  ("derived child, inherited weights", "child_valid_accuracy"),
                  ("child, BN re-estimated", "child_valid_accuracy_recalibrated_bn")]
        for offset, (label, key) in enumerate(series):
            values = [np.mean([r[key] for r in rows if r["method"] == m and r[key] is not None]
                              or [np.nan]) for m in methods]
            axes.bar(x + (offset - 1) * 0.27, values, 0.27, label=label)
        axes.set_xticks(x, methods, rotation=45, ha="right", fontsize=7)
        axes.set_ylabel("validation accuracy")
        axes.set_title("Search vs. derived child (paper Table 8)")
        axes.legend(fontsize=7)
    elif ablation == "num_samples":
        # Every run as a point, the mean over seeds per M as a line.
        ms = [r["M"] for r in rows]
        means = summary["by_M"]
        axes[0].plot(ms, [r["parameters"] / 1e6 for r in rows], "o", alpha=0.5)
        axes[0].plot([e["M"] for e in means], [e["parameters"] / 1e6 for e in means], "-")
        axes[0].set_xlabel("M (EGS samples)")
        axes[0].set_ylabel("parameters of the derived network (M)")
        axes[1].plot(ms, [r["retrain_test_accuracy"] for r in rows], "s", alpha=0.5,
                     label="test, each run")
        axes[1].errorbar([e["M"] for e in means], [e["mean"] for e in means],
                         yerr=[e["std"] or 0.0 for e in means], fmt="-", capsize=4,
                         label="test, mean +- std")
        axes[1].plot([e["M"] for e in means], [e["valid_mean"] for e in means], "o--",
                     label="valid, mean")
        axes[1].set_xlabel("M (EGS samples)")
        axes[1].set_ylabel("accuracy after retraining")
        axes[1].legend()
        figure.suptitle("Sensitivity to M (paper Table 5)")
    else:
        methods = list(summary["by_method"])
        for index, method in enumerate(methods):
            values = [r["retrain_test_accuracy"] for r in rows if r["method"] == method]
            axes.scatter([index] * len(values), values, alpha=0.6)
            entry = summary["by_method"][method]
            axes.errorbar(index + 0.15, entry["mean"], yerr=entry["std"] or 0.0, fmt="k_",
                          capsize=4)
        axes.set_xticks(range(len(methods)), methods)
        axes.set_ylabel("test accuracy after retraining")
        axes.set_title("Seeds (paper Table 7 / Fig. 3b): mean +- std")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
