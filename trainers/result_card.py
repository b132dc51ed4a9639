"""Choose a searched cell on validation, then write the result card of its retraining.

    # 1. rank the candidates by their proxy retraining's validation accuracy and
    #    write the winner's genotype (before the final training: the test split
    #    plays no part in the choice)
    python -m trainers.result_card --candidates=candidates.json \\
        --genotype_out=docs/results/fashion_mnist_genotype.json \\
        --candidates_csv=docs/results/fashion_mnist_candidates.csv
    # 2. after `train_cifar --genotype=<that file> --model_dir=D ...` has finished:
    python -m trainers.result_card --candidates=candidates.json --final_dir=D \\
        --genotype_out=docs/results/fashion_mnist_genotype.json \\
        --output=docs/results/fashion_mnist.json --command="python -m trainers.train_cifar ..."
    # a retraining after an earlier one whose test accuracy was read names it:
    #   --earlier_attempt=attempt1=D1 (listed on the card, counted in total_hours)

candidates.json lists {"method", "seed", "name", "search_dir", "proxy_dir"} per
searched cell (datanas.analysis.result_card).

Every file it would write (--genotype_out in step 1, --candidates_csv,
--output) is checked before anything is read: an existing file is refused
unless --overwrite is given, and a path in a run directory (one holding
run_identity.json, or below one) is always refused -- a run's files are
written by its trainer only.
"""

import json
import os
import sys

from absl import app
from absl import flags as absl_flags

absl_flags.DEFINE_string("candidates", None, "JSON list of candidates: method, seed, name, "
                         "search_dir, proxy_dir.")
absl_flags.mark_flag_as_required("candidates")
absl_flags.DEFINE_string("genotype_out", None, "Where the chosen cell's genotype is written "
                         "(step 1) or already is (step 2); recorded relative to the "
                         "repository root.")
absl_flags.mark_flag_as_required("genotype_out")
absl_flags.DEFINE_string("candidates_csv", None, "CSV of the ranking (method, seed, ...).")
absl_flags.DEFINE_string("final_dir", None, "train_cifar --model_dir of the chosen cell's "
                         "final training (step 2).")
absl_flags.DEFINE_string("output", None, "Result card JSON (step 2).")
absl_flags.DEFINE_string("dataset", "fashion_mnist", "Dataset named on the card.")
absl_flags.DEFINE_string("command", None, "The final training's command, for the card.")
absl_flags.DEFINE_multi_string("earlier_attempt", [], "name=run_dir of an earlier final "
                               "training of the same cell whose test accuracy was read (repeat "
                               "per attempt): listed on the card and counted in total_hours.")
absl_flags.DEFINE_bool("overwrite", False, "Replace existing output files (--genotype_out in "
                       "step 1, --candidates_csv, --output); never a file in a run directory.")
FLAGS = absl_flags.FLAGS


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Published Fashion-MNIST test accuracies (Debian dataset-fashion-mnist README's
# benchmark table), printed beside ours; not measured here.
FASHION_MNIST_PUBLISHED = {"2 Conv + pooling": 0.916, "2 Conv + pooling + batch norm": 0.934,
                           "Google AutoML": 0.939, "ResNet18": 0.949, "MobileNet": 0.950,
                           "DenseNet-BC (768K parameters)": 0.954,
                           "WRN-40-4 (8.9M parameters)": 0.967}


def _candidate_entries(path):
    """The entries of the candidates file (read before TensorFlow is imported)."""
    with open(path) as f:
        entries = json.load(f)
    if not isinstance(entries, list) or not entries:
        raise ValueError("expected a non-empty JSON list of candidates (method, seed, name, "
                         "search_dir, proxy_dir), got "
                         + ("an empty list." if isinstance(entries, list)
                            else f"a {type(entries).__name__}."))
    return entries


def output_refusal(flag, path, overwrite):
    """Why the output file `path` of `flag` may not be written (one line), or None."""
    if os.path.isdir(path):
        return f"{flag}={path} is a directory; give a file path."
    from datanas.engine.run_identity import run_root  # pylint: disable=import-outside-toplevel
    root = run_root(path)
    if root is not None:
        return (f"{flag}={path} lies in the run directory {root}, whose files only its run "
                "writes (--overwrite included); write it outside run directories.")
    if os.path.lexists(path) and not overwrite:
        return f"{flag}={path} exists; pass --overwrite to replace it, or choose a new path."
    return None


def _outputs():
    """(flag, path) of every file this command writes."""
    step_one = FLAGS.final_dir is None   # step 2 reads --genotype_out, step 1 no --output
    written = [("--genotype_out", FLAGS.genotype_out if step_one else None),
               ("--candidates_csv", FLAGS.candidates_csv),
               ("--output", None if step_one else FLAGS.output)]
    return [(flag, path) for flag, path in written if path]


def main(argv):
    del argv
    # Checked before anything is read or imported: a refused path costs nothing.
    for flag, path in _outputs():
        refusal = output_refusal(flag, path, FLAGS.overwrite)
        if refusal:
            sys.exit(f"result_card: error: {refusal}")
    try:
        entries = _candidate_entries(FLAGS.candidates)
    except (OSError, ValueError) as error:
        sys.exit(f"result_card: error: --candidates={FLAGS.candidates}: {error}")
    from datanas.analysis.result_card import (Candidate, proxied_genotype, rank_candidates,   # pylint: disable=import-outside-toplevel
                                              result_card, write_candidates_csv)
    from datanas.engine.run_files import RunWriteFailed, write_json_atomic   # pylint: disable=import-outside-toplevel
    try:
        candidates = [Candidate(**entry) for entry in entries]
        ranked = rank_candidates(candidates)
    except (OSError, TypeError, ValueError, KeyError) as error:
        sys.exit(f"result_card: error: --candidates={FLAGS.candidates}: {error}")
    for row in ranked:
        print(f"{row['name']:<24} proxy valid {row['proxy_valid_accuracy']:.4f}"
              + ("  <- chosen" if row["selected"] else ""))
    chosen = next(c for c in candidates if c.name == ranked[0]["name"])
    genotype_rel = os.path.relpath(os.path.abspath(FLAGS.genotype_out), ROOT)
    if FLAGS.final_dir is None:
        try:   # a full disk: one line, each file whole or as it was (atomic writes)
            if FLAGS.candidates_csv:
                write_candidates_csv(FLAGS.candidates_csv, ranked)
            write_json_atomic(FLAGS.genotype_out, proxied_genotype(chosen))
        except RunWriteFailed as error:
            sys.exit(f"result_card: error: {error}")
        print(f"chosen cell {chosen.name} written to {FLAGS.genotype_out}")
        return
    from datanas.engine.run_files import RunFileDamaged, read_json   # pylint: disable=import-outside-toplevel
    try:
        written = read_json(FLAGS.genotype_out)
    except (OSError, RunFileDamaged) as error:
        sys.exit(f"result_card: error: --genotype_out={FLAGS.genotype_out} (step 1's chosen "
                 f"cell) cannot be read: {error}")
    if written != proxied_genotype(chosen):
        sys.exit(f"result_card: error: {FLAGS.genotype_out} is not the chosen cell "
                 f"({chosen.name}); rerun step 1.")
    earlier = []
    for spec in FLAGS.earlier_attempt:
        name, sep, run_dir = spec.partition("=")
        if not sep or not name or not run_dir:
            sys.exit(f"result_card: error: --earlier_attempt={spec!r}: expected name=run_dir.")
        earlier.append({"name": name, "run_dir": run_dir})
    try:
        card = result_card(FLAGS.final_dir, ranked, genotype_rel, dataset=FLAGS.dataset,
                           command=FLAGS.command, published=FASHION_MNIST_PUBLISHED
                           if FLAGS.dataset == "fashion_mnist" else None,
                           earlier_attempts=earlier)
    except (OSError, ValueError, KeyError) as error:
        sys.exit(f"result_card: error: --final_dir={FLAGS.final_dir}: {error}")
    try:
        if FLAGS.candidates_csv:
            write_candidates_csv(FLAGS.candidates_csv, ranked)
        if FLAGS.output:
            write_json_atomic(FLAGS.output, card)
    except RunWriteFailed as error:
        sys.exit(f"result_card: error: {error}")
    print(f"test accuracy {card['test_accuracy']:.4f}, {card['parameters']} parameters, "
          f"search {card['search_hours']:.2f} h + retraining {card['retrain_hours']:.2f} h"
          + "".join(f" + {a['name']} {a['retrain_hours']:.2f} h (test {a['test_accuracy']:.4f})"
                    for a in card["earlier_attempts"])
          + f" = {card['total_hours']:.2f} h")


if __name__ == "__main__":
    app.run(main)
