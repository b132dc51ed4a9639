"""Whether searches with different seeds learned the same thing.

A search whose logits follow a noise-driven walk ends with probabilities
that are unrelated between seeds (Pearson r about 0); one that follows the
gradient's signal learns correlated ones.  This reads the
``arch_probabilities.json`` a search run writes (conv space: per cell kind,
per node, p over (input, op) pairs) and reports:

* ``pearson``: for each pair of runs, the Pearson correlation of their
  probabilities, over all (cell kind, node, input, op) entries, and per cell
  kind; ``mean_pearson`` averages the pairs;
* ``entropy``: each run's mean entropy of its distributions (per node or
  per edge, the run's scope), against the uniform distribution's (where
  every search starts, up to its init);
* ``op_probabilities``: per run and cell kind, the probability of each op
  (summed over a node's inputs, averaged over nodes): what the search
  learned to prefer.
"""

import itertools
import json

import numpy as np

__all__ = ["load_probabilities", "node_entropy", "op_probabilities", "seed_agreement",
           "plot_agreement"]


def load_probabilities(path):
    """{kind: [array p of each node]} from an arch_probabilities.json."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    kinds = [k for k in ("normal", "reduce", "recurrent") if k in data]
    if not kinds:
        raise ValueError(f"{path} holds no cell kind (normal, reduce or recurrent); is it an "
                         "arch_probabilities.json of a search run?")
    return {kind: [np.asarray(node["p"], np.float64) for node in data[kind]] for kind in kinds}


def _scope(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle).get("scope", "node")


def op_probabilities(probabilities, primitives):
    """{kind: {op: probability}}: each node's p summed over its inputs, then
    averaged over the nodes."""
    return {kind: dict(zip(primitives, np.mean([p.sum(axis=0) / p.sum() for p in nodes],
                                               axis=0).round(4).tolist()))
            for kind, nodes in probabilities.items()}


def node_entropy(probabilities, scope="node"):
    """Mean entropy (natural log) of the run's distributions -- one per node
    over all its (input, op) pairs for the node scope, one per edge over its
    ops for the edge scope -- and the same for uniform distributions."""
    entropies, uniform = [], []
    for nodes in probabilities.values():
        for p in nodes:
            rows = p.reshape(1, -1) if scope == "node" else p.reshape(-1, p.shape[-1])
            rows = rows / rows.sum(axis=-1, keepdims=True)
            entropies.extend(-(rows * np.log(rows + 1e-300)).sum(axis=-1))
            uniform.extend([np.log(rows.shape[-1])] * rows.shape[0])
    return float(np.mean(entropies)), float(np.mean(uniform))


def _pearson(a, b):
    a, b = a - a.mean(), b - b.mean()
    norm = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / norm) if norm > 0 else 0.0


def seed_agreement(paths, names=None):
    """Agreement of the runs' learned probabilities (see module doc).

    Args:
      paths: arch_probabilities.json files of >= 2 runs of one search space
        and shape.
      names: labels of the runs (default: the paths).
    """
    if len(paths) < 2:
        raise ValueError(f"seed agreement needs at least 2 runs, got {len(paths)}.")
    names = list(names or paths)
    runs = [load_probabilities(p) for p in paths]
    kinds = list(runs[0])
    for name, run in zip(names, runs):
        shapes = {k: [p.shape for p in run.get(k, [])] for k in kinds}
        if shapes != {k: [p.shape for p in runs[0][k]] for k in kinds}:
            raise ValueError(f"run {name} has another cell shape than {names[0]}; only runs "
                             "of one space and shape can be compared.")
    flat = [{k: np.concatenate([p.ravel() for p in run[k]]) for k in kinds} for run in runs]
    pairs = []
    for i, j in itertools.combinations(range(len(runs)), 2):
        everything = [np.concatenate([flat[r][k] for k in kinds]) for r in (i, j)]
        pairs.append({"runs": [names[i], names[j]], "all": _pearson(*everything),
                      **{k: _pearson(flat[i][k], flat[j][k]) for k in kinds}})
    entropies, ops = {}, {}
    for name, run, path in zip(names, runs, paths):
        entropy, uniform = node_entropy(run, _scope(path))
        entropies[name] = {"entropy": entropy, "uniform": uniform,
                           "relative_drop": 1.0 - entropy / uniform}
        with open(path, encoding="utf-8") as handle:
            primitives = json.load(handle).get("primitives")
        if primitives:
            ops[name] = op_probabilities(run, primitives)
    return {"pearson": pairs,
            "mean_pearson": float(np.mean([p["all"] for p in pairs])),
            "mean_pearson_by_kind": {k: float(np.mean([p[k] for p in pairs])) for k in kinds},
            "entropy": entropies, "op_probabilities": ops}


def plot_agreement(result, histories, path):
    """Writes a figure: each run's architecture entropy per epoch (from its
    metrics.jsonl records, `histories` {name: [record]}), and each run's op
    probabilities per cell kind (needs matplotlib)."""
    try:
        import matplotlib  # pylint: disable=import-outside-toplevel
    except ImportError as error:
        raise ImportError("plots need matplotlib: pip install 'datanas[plots]'") from error
    matplotlib.use("Agg")
    from matplotlib import pyplot  # pylint: disable=import-outside-toplevel

    ops = result["op_probabilities"]
    kinds = list(next(iter(ops.values()))) if ops else []
    figure, axes = pyplot.subplots(1, 1 + len(kinds), figsize=(4.2 * (1 + len(kinds)), 3.8))
    axes = np.atleast_1d(axes)
    for name, records in histories.items():
        axes[0].plot([r["epoch"] for r in records], [r["arch_entropy"] for r in records],
                     "o-", label=name, markersize=3)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("mean entropy of the architecture distributions")
    axes[0].legend(fontsize=7)
    for axis, kind in zip(axes[1:], kinds):
        names = list(ops)
        primitives = list(ops[names[0]][kind])
        x = np.arange(len(primitives))
        width = 0.8 / len(names)
        for index, name in enumerate(names):
            axis.bar(x + (index - (len(names) - 1) / 2) * width,
                     [ops[name][kind][p] for p in primitives], width, label=name)
        axis.axhline(1.0 / len(primitives), color="gray", linewidth=0.8, linestyle="--")
        axis.set_xticks(x, primitives, rotation=60, ha="right", fontsize=7)
        axis.set_ylabel("probability of the op")
        axis.set_title(f"{kind} cell (dashed: uniform)")
    figure.suptitle(f"Seeds' agreement: mean pairwise Pearson r = {result['mean_pearson']:.2f}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
