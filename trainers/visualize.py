"""Draw a found cell: convolutional (normal + reduction) or recurrent.

    python -m trainers.visualize --genotype=runs/search_fmnist --output=cell.png
    python -m trainers.visualize --genotype=docs/lm/genotype.json --output=rnn_cell.svg
    python -m trainers.visualize --genotype=genotype.json --output=cell.txt --cell=normal

--genotype is a genotype JSON file or a search run directory (its derived
genotype.json).  The extension of --output picks the format: .png, .svg, .pdf
(rendered by Graphviz's `dot`), .txt (every (op, input) of every node) or
.dot (the Graphviz source).
"""

import sys

from absl import app
from absl import flags as absl_flags

absl_flags.DEFINE_string("genotype", None, "Genotype JSON file (convolutional or recurrent) or "
                         "a search run directory holding genotype.json.")
absl_flags.DEFINE_string("output", None, "File to write: .png, .svg, .pdf, .txt or .dot.")
absl_flags.DEFINE_enum("cell", "all", ["all", "normal", "reduce", "recurrent"],
                       "Which cell to draw; 'all' draws every cell of the genotype.")
absl_flags.mark_flags_as_required(["genotype", "output"])

FLAGS = absl_flags.FLAGS


def main(argv):
    if len(argv) > 1:
        sys.exit(f"visualize: error: unexpected arguments {argv[1:]}; use --genotype and "
                 "--output.")
    # pylint: disable=import-outside-toplevel
    from datanas.spaces.drawing import GraphvizNotFoundError, draw_genotype, output_format
    from datanas.spaces.genotype_files import load_any_genotype
    from datanas.spaces.darts_cnn.genotype import GenotypeError

    try:
        output_format(FLAGS.output)   # a bad extension is refused before anything is read
        genotype = load_any_genotype(FLAGS.genotype)
        path = draw_genotype(genotype, FLAGS.output,
                             kinds=None if FLAGS.cell == "all" else FLAGS.cell)
    except (GenotypeError, ValueError, GraphvizNotFoundError, RuntimeError, OSError) as error:
        sys.exit(f"visualize: error: {error}")
    print(f"visualize: wrote {path}", flush=True)


if __name__ == "__main__":
    app.run(main)
