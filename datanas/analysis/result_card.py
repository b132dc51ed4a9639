"""A result card: which searched cell was chosen, on what, and what it scored.

The cell is chosen among finished searches by the validation accuracy of a
short proxy retraining of each derived cell (the same budget for every
candidate; the validation split is carved from the training images), never by
a test accuracy.  The chosen cell is then retrained on the full training set
and its test accuracy, parameters and costs are written to one JSON file; an
earlier retraining whose test accuracy was also read is listed there too.
Every figure is read from the run directories (``metrics.jsonl``,
``results.json``, ``train_config.json``); nothing is typed in.
"""

import csv
import dataclasses
import io
import json
import os

from datanas.engine.run_files import write_text_atomic

__all__ = ["Candidate", "proxied_genotype", "run_seconds", "rank_candidates", "result_card",
           "write_candidates_csv"]


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A searched cell: its search run directory and its proxy retraining's."""
    method: str
    seed: int
    name: str
    search_dir: str
    proxy_dir: str


def _records(run_dir):
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise ValueError(f"{run_dir} has no metrics.jsonl: not a finished run directory.")
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    if not records:
        raise ValueError(f"{path} is empty: the run has not finished an epoch.")
    return records


def proxied_genotype(candidate):
    """The genotype the proxy trained (its train_config metadata), else the
    search's genotype.json."""
    path = os.path.join(candidate.proxy_dir, "train_config.json")
    if os.path.isfile(path):
        with open(path) as f:
            genotype = json.load(f).get("metadata", {}).get("genotype")
        if genotype:
            return genotype
    path = os.path.join(candidate.search_dir, "genotype.json")
    if not os.path.isfile(path):
        raise ValueError(f"no genotype for {candidate.name}: neither {candidate.proxy_dir}'s "
                         f"train_config.json nor {path}.")
    with open(path) as f:
        return json.load(f)


def run_seconds(run_dir):
    """Wall-clock seconds of a run's epochs (training, evaluation, and the
    first epoch's graph building), summed over every process that ran it."""
    return _seconds(_records(run_dir))


def _seconds(records):
    return float(sum(record["epoch_seconds"] for record in records))


def rank_candidates(candidates):
    """Rows of every candidate, best proxy validation accuracy first.

    The proxy's last epoch is read (every proxy has the same budget); a proxy
    without a validation split is refused, since the choice must not fall to
    a test accuracy.  No candidates, or two of one name, is refused.
    """
    if not candidates:
        raise ValueError("no candidates to choose from; list at least one searched cell.")
    names = [candidate.name for candidate in candidates]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"candidate names must be unique (the card names the chosen one); "
                         f"repeated: {', '.join(repeated)}.")
    rows = []
    for candidate in candidates:
        proxy = _records(candidate.proxy_dir)
        last = proxy[-1]
        if "valid_accuracy" not in last:
            raise ValueError(f"{candidate.proxy_dir} has no validation accuracy; retrain the "
                             "proxy with a validation split (--validation_fraction > 0).")
        rows.append({"method": candidate.method, "seed": candidate.seed, "name": candidate.name,
                     "search_hours": run_seconds(candidate.search_dir) / 3600,
                     "proxy_hours": _seconds(proxy) / 3600,
                     "proxy_epochs": last["epoch"],
                     "proxy_valid_accuracy": last["valid_accuracy"]})
    rows.sort(key=lambda row: -row["proxy_valid_accuracy"])
    for index, row in enumerate(rows):
        row["selected"] = index == 0
    return rows


def _finished_run(run_dir):
    """(final epoch record, train_config) of a finished train run directory."""
    with open(os.path.join(run_dir, "results.json")) as f:
        final = json.load(f)["final"]
    with open(os.path.join(run_dir, "train_config.json")) as f:
        config = json.load(f)
    if "test_accuracy" not in final:
        raise ValueError(f"{run_dir}'s last epoch has no test accuracy.")
    if final["epoch"] != config["train"]["epochs"]:
        raise ValueError(f"{run_dir} stopped at epoch {final['epoch']} of "
                         f"{config['train']['epochs']}: finish the run first.")
    return final, config


def result_card(final_dir, ranked, genotype_path, *, dataset, command=None, published=None,
                earlier_attempts=()):
    """The card of the retrained chosen cell in `final_dir` (a train run directory).

    search_hours counts every candidate's search and proxy retraining (the
    cost of making the choice), retrain_hours the final training's epochs.
    `earlier_attempts` are {"name", "run_dir"} of earlier final trainings of
    the same cell whose test accuracy was read too: the card lists each (its
    recipe, test accuracy and hours) and counts them in total_hours, so a
    second try is never reported as if it were the first.
    """
    final, config = _finished_run(final_dir)
    attempts = []
    for attempt in earlier_attempts:
        earlier, earlier_config = _finished_run(attempt["run_dir"])
        if earlier_config["metadata"].get("genotype") != config["metadata"].get("genotype"):
            raise ValueError(f"{attempt['run_dir']} trained another cell than {final_dir}; "
                             "an earlier attempt must retrain the same chosen cell.")
        attempts.append({"name": attempt["name"], "test_accuracy": earlier["test_accuracy"],
                         "retrain_hours": round(run_seconds(attempt["run_dir"]) / 3600, 3),
                         "training": earlier_config["train"]})
    search_hours = round(sum(r["search_hours"] + r["proxy_hours"] for r in ranked), 3)
    retrain_hours = round(run_seconds(final_dir) / 3600, 3)
    model = config["model"]
    return {
        "dataset": dataset,
        "test_accuracy": final["test_accuracy"],
        "test_error": final.get("test_error"),
        "parameters": config["metadata"]["parameters"],
        "multiply_adds": config["metadata"]["multiply_adds"],
        "search_hours": search_hours,
        "retrain_hours": retrain_hours,
        "earlier_attempts": attempts,
        "total_hours": round(search_hours + retrain_hours
                             + sum(a["retrain_hours"] for a in attempts), 3),
        "genotype": genotype_path,
        "selected": next(r["name"] for r in ranked if r["selected"]),
        "selected_on": "proxy validation accuracy (held-out part of the training images)",
        "candidates": ranked,
        "network": {key: model.get(key) for key in ("layers", "init_channels", "stem_stride",
                                                    "auxiliary")},
        "training": config["train"],
        "command": command,
        "published_baselines": published or {},
    }


def write_candidates_csv(path, ranked):
    """One row per candidate: method, seed, name, hours, proxy accuracy, selected."""
    fields = ["method", "seed", "name", "search_hours", "proxy_hours", "proxy_epochs",
              "proxy_valid_accuracy", "selected"]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    for row in ranked:
        writer.writerow({key: row[key] for key in fields})
    write_text_atomic(path, text.getvalue())   # a failed write leaves no half table
