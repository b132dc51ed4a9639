"""Random-search baseline: uniform cells, equal training budgets, best on validation.

Candidates are drawn uniformly from the search space (``space.random_genotype``,
e.g. two distinct inputs per node with uniform ops in the DARTS space, as in
the random baselines of DARTS and Li & Talwalkar 2019).  The search's
weight-training epochs (``config.epochs``, the budget of the search it is
compared with) are shared out over the candidates, the remainder one epoch
each to the first ones (``datanas.searching.runs.random_epochs_per_candidate``),
so the baseline costs what a search costs.  Each candidate trains, from the
same initial weights, as the fixed child inside the search supernet (only
its ops run; its learning rate decays over its own epochs), driven by the
engine's run loop in ``candidates/<index>/``; the candidate with the best
validation value of the task's headline metric is selected (the highest
accuracy, the lowest perplexity).  The test split is never used.

Resume: finished candidates are recorded in ``candidates.jsonl`` and
skipped; an interrupted candidate resumes from its own step checkpoint.
"""

import dataclasses
import os
import sys
import time

import numpy as np
import tensorflow as tf

from datanas.engine.loop import Program, run_loop
from datanas.engine.run_files import append_jsonl, cut_torn_tail, read_jsonl, write_json_atomic
from datanas.engine.strategy import distributed_epoch, run_directory
from datanas.searching.run import (SEARCH_RESULT_FILE, SearchResult, make_searcher, write_genotype,
                                  write_search_config)
from datanas.spaces import get_space

__all__ = ["candidate_genotypes", "run_random_search", "CandidateProgram"]


def _plural(name):
    """valid_accuracy -> valid_accuracies, valid_miou -> valid_mious."""
    return name[:-1] + "ies" if name.endswith("y") else name + "s"


def candidate_genotypes(space, supernet, count, seed):
    """The `count` candidates of a run: a pure function of `seed`."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"number of random-search candidates must be a positive integer, "
                         f"got {count!r}.")
    rng = np.random.default_rng([seed, 20191])
    return [space.random_genotype(supernet, rng) for _ in range(count)]


class CandidateProgram(Program):
    """Weight training of one fixed child for the run loop; validation at the end."""

    def __init__(self, searcher, inputs, edge_weights, valid_data):
        self.searcher, self.inputs = searcher, inputs
        self.edge_weights, self.valid_data = edge_weights, valid_data
        self.state = searcher.state
        self.epochs = searcher.config.epochs
        self.steps_per_epoch = searcher.steps_per_epoch

    def checkpoint_objects(self):
        return {"model": self.searcher.model, "weight_optimizer": self.searcher.weight_optimizer}

    def batches(self, epoch, skip):
        return distributed_epoch(self.searcher.strategy, self.inputs.train, epoch, skip,
                                 self.steps_per_epoch)

    def train_step(self, batch):
        return self.searcher.fixed_weight_step(batch, self.edge_weights)

    def end_epoch(self, epoch):
        if epoch + 1 < self.epochs:
            return {}
        valid = self.searcher.evaluate(self.valid_data, self.edge_weights)
        return {f"valid_{k}": v for k, v in valid.items()}


def run_random_search(model, inputs, config, model_dir, *, candidates, space="darts_cnn",
                      task=None, strategy=None, verbose=1, metadata=None,
                      checkpoint_every_steps=0, callbacks=None):
    """Trains `candidates` uniform cells, `config.epochs` epochs in all.

    `model` is a built supernet whose estimator gives binary codes (its
    logits are unused); each candidate runs as the fixed child inside it,
    from the same initial weights, for its share of `config.epochs`
    (``epochs_per_candidate`` in the files).  Writes ``search_config.json``,
    ``candidates.jsonl`` (one line per finished candidate),
    ``candidates/<i>/`` (each candidate's run), ``genotype.json`` (the best
    candidate) and ``search_result.json`` into `model_dir`.
    """
    from datanas.searching.runs import random_epochs_per_candidate  # pylint: disable=import-outside-toplevel

    if not model.estimator.binary_codes:
        raise ValueError("random search runs candidates as fixed children of a sparse supernet "
                         f"(binary codes); got weighting={getattr(model, 'weighting', '?')!r}.")
    space = get_space(space) if isinstance(space, str) else space
    strategy = strategy or tf.distribute.get_strategy()
    model_dir = run_directory(strategy, model_dir)
    genotypes = candidate_genotypes(space, model, candidates, config.seed)
    epochs = random_epochs_per_candidate(config.epochs, candidates)
    # One searcher per number of epochs: its learning rate decays over them.
    searchers = {}

    def searcher_of(count):
        if count not in searchers:
            searchers[count] = make_searcher(model, inputs,
                                             dataclasses.replace(config, epochs=count),
                                             strategy, task)
        return searchers[count]

    searcher = searcher_of(epochs[0])
    headline = f"valid_{searcher.task.headline}"
    pick = max if searcher.task.headline_higher_is_better else min
    initial_state = searcher.snapshot_state()
    write_search_config(model_dir, searcher, inputs, {
        **dataclasses.asdict(config), "method": "random", "candidates": candidates,
        "epochs_per_candidate": epochs}, metadata)
    records_path = os.path.join(model_dir, "candidates.jsonl")
    torn = cut_torn_tail(records_path)   # a kill while a record was appended
    if torn:
        print(f"{records_path} ended in an incomplete record: cut back to its last complete "
              f"record (the cut bytes are kept in {torn}); that candidate is read back from its "
              "checkpoint.", file=sys.stderr, flush=True)
    records = read_jsonl(records_path)
    if records and verbose:
        print(f"Resuming random search: {len(records)} of {candidates} candidates done.",
              flush=True)
    valid_data = searcher.distribute(inputs.validation)
    started = time.time()
    for index in range(len(records), candidates):
        genotype = genotypes[index]
        searcher = searcher_of(epochs[index])
        searcher.restore_fresh_state(initial_state)
        if verbose:
            print(f"Candidate {index + 1}/{candidates}: {epochs[index]} epoch(s)", flush=True)
        candidate_start = time.time()
        program = CandidateProgram(searcher, inputs, space.child_weights(model, genotype),
                                   valid_data)
        loop = run_loop(program, os.path.join(model_dir, "candidates", str(index)),
                        verbose=verbose,
                        checkpoint_every_steps=checkpoint_every_steps, max_to_keep=1,
                        log_keys=[headline], callbacks=callbacks)
        last = loop.last_record
        record = {"candidate": index, "epochs": epochs[index],
                  **{k: v for k, v in last.items() if k.startswith(("train_", "valid_"))},
                  "cell": space.describe(genotype),
                  "seconds": time.time() - candidate_start, "genotype": genotype.to_dict()}
        records.append(record)
        append_jsonl(records_path, record)

    best = pick(records, key=lambda r: r[headline])
    genotype = space.genotype_from_dict(best["genotype"])
    write_genotype(genotype, os.path.join(model_dir, "genotype.json"))
    final = {
        "method": "random", "candidates": candidates, "epochs": config.epochs,
        "epochs_per_candidate": epochs,
        "best_candidate": best["candidate"], f"best_{headline}": best[headline],
        _plural(headline): [r[headline] for r in records],
        **space.describe(genotype),
        "search_seconds_this_process": time.time() - started,
        "steps": sum(epochs) * searcher.steps_per_epoch,
    }
    write_json_atomic(os.path.join(model_dir, SEARCH_RESULT_FILE), final)
    if verbose:
        print(genotype.summary())
        print(f"best of {candidates} candidates: #{best['candidate']} {headline}="
              f"{best[headline]:.4f}; genotype written to "
              f"{os.path.join(model_dir, 'genotype.json')}", flush=True)
    return SearchResult(genotype=genotype, genotypes={"random": genotype}, history=records,
                        final=final)
