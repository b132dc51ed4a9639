"""Did searches with different seeds learn the same architecture distribution?

    python -m trainers.seed_agreement --runs=/tmp/s0,/tmp/s1,/tmp/s2 \\
        --output=docs/learning/seed_agreement.json --plot=docs/learning/seed_agreement.png

Reads each search run directory's arch_probabilities.json and writes (and
prints) each run's entropy drop from the uniform distribution, the pairwise
Pearson correlations of the learned (input, op) probabilities, and each
run's op probabilities per cell kind (datanas.analysis.seed_agreement).
"""

import json
import os
import sys

from absl import app
from absl import flags as absl_flags

absl_flags.DEFINE_list("runs", None, "Search run directories (>= 2) of one space and shape.")
absl_flags.mark_flag_as_required("runs")
absl_flags.DEFINE_string("output", None, "JSON file to write (default: print only).")
absl_flags.DEFINE_string("plot", None, "PNG to draw: entropy per epoch and op probabilities "
                         "per cell kind of each run (needs matplotlib).")
FLAGS = absl_flags.FLAGS


def main(argv):
    del argv
    from datanas.analysis.seed_agreement import plot_agreement, seed_agreement   # pylint: disable=import-outside-toplevel
    from datanas.engine.run_files import write_json_atomic   # pylint: disable=import-outside-toplevel
    paths = [os.path.join(run, "arch_probabilities.json") for run in FLAGS.runs]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        sys.exit(f"seed_agreement: error: no arch_probabilities.json in "
                 f"{', '.join(os.path.dirname(p) for p in missing)} (a finished search run "
                 "writes one).")
    try:
        result = seed_agreement(paths, names=[os.path.basename(os.path.normpath(r))
                                              for r in FLAGS.runs])
    except ValueError as error:
        sys.exit(f"seed_agreement: error: {error}")
    for name, entropy in result["entropy"].items():
        print(f"{name}: entropy {entropy['entropy']:.4f} (uniform {entropy['uniform']:.4f}, "
              f"drop {100 * entropy['relative_drop']:.1f}%)")
    for pair in result["pearson"]:
        print(f"{pair['runs'][0]} vs {pair['runs'][1]}: Pearson r {pair['all']:+.3f}")
    print(f"mean pairwise Pearson r {result['mean_pearson']:+.3f}")
    if FLAGS.plot:
        histories = {}
        for run in FLAGS.runs:
            metrics = os.path.join(run, "metrics.jsonl")
            with open(metrics, encoding="utf-8") as handle:
                histories[os.path.basename(os.path.normpath(run))] = [
                    json.loads(line) for line in handle if line.strip()]
        try:
            plot_agreement(result, histories, FLAGS.plot)
        except ImportError as error:
            sys.exit(f"seed_agreement: error: {error}")
        print(f"Wrote {FLAGS.plot}")
    if FLAGS.output:
        write_json_atomic(FLAGS.output, {"runs": list(FLAGS.runs), **result})
        print(f"Wrote {FLAGS.output}")
    else:
        print(json.dumps(result["op_probabilities"], indent=1))


if __name__ == "__main__":
    app.run(main)
