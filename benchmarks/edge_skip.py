"""Build time and step time of sparse MixedEdges: `tf.cond` vs empty batches.

    python -m benchmarks.edge_skip                    # both forms, stride 1 and 2
    python -m benchmarks.edge_skip --edges=10 --selected=0.3

Builds `--edges` MixedEdges (full DARTS op set, C channels, batch x size x
size inputs), each with its own random binary code per step (each op
selected with probability `--selected`), and times the first call of a
compiled forward+backward step (graph build) and the median of the following
steps.  Each form runs in its own process so one's graphs do not slow the
other.  The README's "Skipping unselected ops" section quotes this script.
"""

import json
import subprocess
import sys
import time

from absl import app
from absl import flags as absl_flags

absl_flags.DEFINE_integer("edges", 10, "Number of edges.")
absl_flags.DEFINE_integer("channels", 16, "Channels.")
absl_flags.DEFINE_integer("batch_size", 32, "Batch size.")
absl_flags.DEFINE_integer("image_size", 32, "Input height = width.")
absl_flags.DEFINE_float("selected", 0.3, "Probability that an op of an edge is selected.")
absl_flags.DEFINE_integer("codes", 8, "Distinct codes cycled through (x3 timed steps each).")
absl_flags.DEFINE_list("strides", ["1", "2"], "Strides to measure.")
absl_flags.DEFINE_string("_worker", None, "Internal: 'skip,stride' to measure in this process.")
FLAGS = absl_flags.FLAGS


def measure(skip, stride):
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    import keras  # pylint: disable=import-outside-toplevel
    from datanas.spaces.darts_cnn.genotype import CONV_PRIMITIVES  # pylint: disable=import-outside-toplevel
    from datanas.spaces.darts_cnn.mixed_edge import MixedEdge  # pylint: disable=import-outside-toplevel

    keras.utils.set_random_seed(0)
    k = len(CONV_PRIMITIVES)
    edges = [MixedEdge(FLAGS.channels, stride, skip=skip) for _ in range(FLAGS.edges)]
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(FLAGS.batch_size, FLAGS.image_size, FLAGS.image_size,
                                     FLAGS.channels)).astype("float32"))
    for edge in edges:
        edge(x, tf.zeros([k]), training=False)
    variables = [v for edge in edges for v in edge.trainable_variables]
    codes = [tf.constant((rng.random((FLAGS.edges, k)) < FLAGS.selected).astype("float32"))
             for _ in range(FLAGS.codes)]

    @tf.function
    def step(inputs, code):
        with tf.GradientTape() as tape:
            loss = tf.add_n([tf.reduce_sum(edge(inputs, code[i], training=True) ** 2)
                             for i, edge in enumerate(edges)])
        return tape.gradient(loss, variables)

    start = time.perf_counter()
    step(x, codes[0])
    build = time.perf_counter() - start
    times = []
    for _ in range(3):
        for code in codes:
            start = time.perf_counter()
            step(x, code)
            times.append(time.perf_counter() - start)
    return {"skip": skip, "stride": stride, "build_s": round(build, 2),
            "median_step_s": round(float(np.median(times)), 4)}


def main(argv):
    del argv
    if FLAGS._worker:  # pylint: disable=protected-access
        skip, stride = FLAGS._worker.split(",")  # pylint: disable=protected-access
        print("RESULT " + json.dumps(measure(skip, int(stride))))
        return
    passthrough = [a for a in sys.argv[1:] if not a.startswith("--_worker")]
    print(f"{FLAGS.edges} edges, C={FLAGS.channels}, batch {FLAGS.batch_size}, "
          f"{FLAGS.image_size}x{FLAGS.image_size}, P(selected)={FLAGS.selected}")
    print(f"{'skip':10s} {'stride':>6s} {'build s':>8s} {'median step s':>14s}")
    for stride in FLAGS.strides:
        for skip in ("cond", "examples"):
            proc = subprocess.run([sys.executable, "-m", "benchmarks.edge_skip", *passthrough,
                                   f"--_worker={skip},{stride}"], capture_output=True, text=True,
                                  check=False)
            if proc.returncode:
                raise SystemExit(proc.stderr[-2000:])
            row = json.loads(proc.stdout.split("RESULT ", 1)[1])
            print(f"{skip:10s} {stride:>6s} {row['build_s']:8.1f} {row['median_step_s']:14.4f}")


if __name__ == "__main__":
    app.run(main)
