"""Random-search baseline: uniform cells, equal training budgets, best on validation.

Candidates are drawn uniformly from the DARTS cell space over the same
candidate ops (every intermediate node takes ``inputs_per_node`` distinct
earlier nodes, each through an op drawn uniformly from the non-'none' ops),
as in the random baselines of DARTS (Liu et al. 2019) and Li & Talwalkar
(2019).  Each candidate trains for the same number of epochs, starting from
the same initial weights, as the child network inside the search supernet
(only its ops run); the candidate with the best validation accuracy is
selected.  The test split is never used.

Resume granularity is one candidate: finished candidates are recorded in
``candidates.jsonl`` and skipped when the same command is rerun; a candidate
interrupted mid-training is retrained from its start.
"""

import dataclasses
import os
import time

import numpy as np
import tensorflow as tf

from datanas.derivation import genotype_to_weights
from datanas.distribute import run_directory
from datanas.genotypes import CELL_KINDS, Genotype, save_genotype
from datanas.progress import epoch_progbar
from datanas.run_files import append_jsonl, read_jsonl, write_json_atomic
from datanas.search import SearchResult, make_searcher, write_search_config

__all__ = ["sample_uniform_genotype", "candidate_genotypes", "run_random_search"]


def sample_uniform_genotype(rng, num_nodes, primitives, inputs_per_node=2):
    """One cell pair drawn uniformly from the DARTS space over `primitives`."""
    ops = [p for p in primitives if p != "none"]
    if not ops:
        raise ValueError(f"primitives {list(primitives)} have no op other than 'none'.")
    cells = {}
    for kind in CELL_KINDS:
        nodes = []
        for node in range(num_nodes):
            sources = rng.choice(node + 2, size=min(inputs_per_node, node + 2), replace=False)
            nodes.append([(ops[int(rng.integers(len(ops)))], int(s)) for s in sorted(sources)])
        cells[kind] = nodes
    concat = tuple(range(2, num_nodes + 2))
    return Genotype(normal=cells["normal"], normal_concat=concat,
                    reduce=cells["reduce"], reduce_concat=concat)


def candidate_genotypes(count, num_nodes, primitives, seed):
    """The `count` candidates of a run: a pure function of `seed`."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"number of random-search candidates must be a positive integer, "
                         f"got {count!r}.")
    rng = np.random.default_rng([seed, 20191])
    return [sample_uniform_genotype(rng, num_nodes, primitives) for _ in range(count)]


def run_random_search(model, inputs, config, model_dir, *, candidates, strategy=None,
                      verbose=1, metadata=None):
    """Trains `candidates` uniform cells for `config.epochs` epochs each.

    `model` is a built sparse-EGS SearchNetwork (its logits are unused); each
    candidate runs as the fixed child inside it, from the same initial
    weights.  Writes ``search_config.json``, ``candidates.jsonl`` (one line
    per finished candidate), ``tensorboard/``, ``genotype.json`` (the best
    candidate) and ``search_result.json`` into `model_dir`.
    """
    if model.mode != "sparse":
        raise ValueError("random search runs candidates inside a sparse SearchNetwork "
                         f"(mode='sparse'); got mode={model.mode!r}.")
    strategy = strategy or tf.distribute.get_strategy()
    model_dir = run_directory(strategy, model_dir)
    genotypes = candidate_genotypes(candidates, model.num_nodes, model.primitives, config.seed)
    searcher = make_searcher(model, inputs, config, strategy)
    steps_per_epoch = searcher.steps_per_epoch
    initial_state = searcher.snapshot_state()
    write_search_config(model_dir, searcher, inputs, {
        **dataclasses.asdict(config), "method": "random", "candidates": candidates,
        "epochs_per_candidate": config.epochs}, metadata)
    records_path = os.path.join(model_dir, "candidates.jsonl")
    records = read_jsonl(records_path)
    if records and verbose:
        print(f"Resuming random search: {len(records)} of {candidates} candidates done.",
              flush=True)
    writer = tf.summary.create_file_writer(os.path.join(model_dir, "tensorboard"))
    valid_data = searcher.distribute(inputs.validation)
    started = time.time()
    for index in range(len(records), candidates):
        genotype = genotypes[index]
        weights = genotype_to_weights(genotype, model.primitives, model.num_nodes)
        searcher.restore_fresh_state(initial_state)
        candidate_start = time.time()
        if verbose:
            print(f"Candidate {index + 1}/{candidates}: {config.epochs} epoch(s)", flush=True)
        for epoch in range(config.epochs):
            progbar = epoch_progbar(steps_per_epoch, verbose)
            searcher.reset_epoch_metrics()
            searcher.train_batches(epoch, inputs, progbar=progbar, edge_weights=weights)
        valid = searcher.evaluate(valid_data, weights)
        record = {"candidate": index, **searcher.epoch_metrics(),
                  "valid_loss": valid["loss"], "valid_accuracy": valid["accuracy"],
                  "skip_connects": genotype.num_skip_connects("normal"),
                  "seconds": time.time() - candidate_start, "genotype": genotype.to_dict()}
        records.append(record)
        append_jsonl(records_path, record)
        with writer.as_default(step=index + 1):
            tf.summary.scalar("candidate_valid_accuracy", valid["accuracy"])
        if verbose:
            print(f"  valid_accuracy={valid['accuracy']:.4f}", flush=True)
    writer.flush()

    best = max(records, key=lambda r: r["valid_accuracy"])
    genotype = Genotype.from_dict(best["genotype"])
    save_genotype(genotype, os.path.join(model_dir, "genotype.json"))
    final = {
        "method": "random", "candidates": candidates, "epochs_per_candidate": config.epochs,
        "best_candidate": best["candidate"], "best_valid_accuracy": best["valid_accuracy"],
        "valid_accuracies": [r["valid_accuracy"] for r in records],
        "skip_connects": {kind: genotype.num_skip_connects(kind) for kind in ("normal", "reduce")},
        "op_counts": genotype.op_counts(),
        "search_seconds_this_process": time.time() - started,
        "steps": candidates * config.epochs * steps_per_epoch,
    }
    write_json_atomic(os.path.join(model_dir, "search_result.json"), final)
    if verbose:
        print(genotype.summary())
        print(f"best of {candidates} candidates: #{best['candidate']} valid_accuracy="
              f"{best['valid_accuracy']:.4f}; genotype written to "
              f"{os.path.join(model_dir, 'genotype.json')}", flush=True)
    return SearchResult(genotype=genotype, genotypes={"random": genotype}, history=records,
                        final=final)
