"""Signal and noise of the architecture gradient, per estimator, on the same
batches and network weights (README "Does the architecture learn?").

    python -m trainers.arch_signal --model_dir=/tmp/arch_signal
    python -m trainers.arch_signal --estimators=darts,M1,M4,M7,M4_t1,M4_edge \
        --warmup_steps=0,150 --batches=4 --draws=4 --model_dir=/tmp/arch_signal

A supernet of the search presets' shape is trained for the largest
--warmup_steps weight steps (children sampled by EGS M=4 from uniform logits,
the logits untouched).  At each listed step count, every estimator's
architecture gradient is taken on the same --batches training batches,
--draws sampled children per batch (DARTS' softmax mixing: one per batch),
and summarised by datanas.analysis.arch_signal.  Writes arch_signal.json and
arch_signal.csv into --model_dir; a finished output is reported, not redone.
"""

import json
import os
import sys
import time

from absl import app
from absl import flags as absl_flags

from flags import core as flags_core

absl_flags.DEFINE_string("model_dir", None, "Output directory.")
absl_flags.mark_flag_as_required("model_dir")
absl_flags.DEFINE_integer("seed", 0, "Seed of the supernet, data order and draws.",
                          lower_bound=0)
flags_core.define_image_data_flags(default_dataset="fashion_mnist", default_batch_size=64)
# --train_size unset: 3000 images (the ablation preset's).
absl_flags.DEFINE_integer("layers", 3, "Cells of the supernet.", lower_bound=3)
absl_flags.DEFINE_integer("init_channels", 8, "Channels of the first cells.", lower_bound=2)
absl_flags.DEFINE_integer("nodes", 4, "Intermediate nodes per cell.", lower_bound=1)
absl_flags.DEFINE_list("warmup_steps", ["0", "400"],
                       "Weight steps before each measurement (cumulative, increasing).")
absl_flags.DEFINE_integer("batches", 6, "Training batches per measurement.", lower_bound=2)
absl_flags.DEFINE_integer("draws", 8, "Sampled children per batch (EGS).", lower_bound=2)
absl_flags.DEFINE_list("estimators", ["darts", "M1", "M4", "M7", "M4_t1", "M4_edge"],
                       "Estimators to measure: 'darts' (softmax mixing per edge) or "
                       "M<m>[_t<temperature>][_node|_edge] (EGS; temperature 5, the search's "
                       "initial one, and node scope unless given).")

FLAGS = absl_flags.FLAGS
COLUMNS = ("warmup_steps", "estimator", "kind", "num_samples", "temperature", "scope",
           "gradient_norm", "signal_norm", "noise_norm", "snr", "steps_to_signal",
           "sampling_share", "cosine_to_dense", "samples", "train_loss")


def _ints(name, values, minimum):
    try:
        parsed = [int(v) for v in values]
    except ValueError:
        sys.exit(f"arch_signal: error: --{name} must be integers, got {','.join(values)}.")
    if any(v < minimum for v in parsed):
        sys.exit(f"arch_signal: error: --{name} must be >= {minimum}, got {','.join(values)}.")
    return parsed


def _estimator(text):
    """An Estimator from its --estimators spelling (see the flag)."""
    from datanas.analysis.arch_signal import Estimator   # pylint: disable=import-outside-toplevel
    if text == "darts":
        return Estimator("darts", "softmax", scope="edge")
    parts = text.split("_")
    try:
        if not parts[0].startswith("M"):
            raise ValueError
        num_samples, temperature, scope = int(parts[0][1:]), 5.0, "node"
        for part in parts[1:]:
            if part in ("node", "edge"):
                scope = part
            elif part.startswith("t"):
                temperature = float(part[1:])
            else:
                raise ValueError
        if num_samples < 1 or temperature <= 0:
            raise ValueError
    except ValueError:
        sys.exit(f"arch_signal: error: --estimators entry {text!r} is neither 'darts' nor "
                 "M<m>[_t<temperature>][_node|_edge] (e.g. M4, M7_t1, M1_edge).")
    return Estimator(text, "egs", num_samples, temperature, scope)


def _settings():
    warmups = _ints("warmup_steps", FLAGS.warmup_steps, 0)
    if warmups != sorted(set(warmups)):
        sys.exit(f"arch_signal: error: --warmup_steps must increase, got "
                 f"{','.join(FLAGS.warmup_steps)}.")
    if not FLAGS.estimators:
        sys.exit("arch_signal: error: --estimators is empty.")
    return warmups, [_estimator(text) for text in FLAGS.estimators]


def main(argv):
    del argv
    flags_core.quiet_logging(FLAGS)
    warmups, estimators = _settings()
    output = os.path.join(FLAGS.model_dir, "arch_signal.json")
    settings = {name: FLAGS[name].value for name in (
        "seed", "dataset", "train_size", "validation_fraction", "batch_size", "layers",
        "init_channels", "nodes",
        "warmup_steps", "batches", "draws", "estimators")}
    if FLAGS.image_size is not None:   # resized images: another measurement
        settings["image_size"] = FLAGS.image_size
    if os.path.exists(output):
        done = json.loads(open(output, encoding="utf-8").read())
        if done["settings"] != settings:
            sys.exit(f"arch_signal: error: {output} holds a measurement with other settings; "
                     "use another --model_dir.")
        print(f"Already measured: {output}")
        return

    from data_tf.image_datasets import DatasetNotFoundError, load_image_dataset
    from datanas.analysis.arch_signal import measure_during_warmup
    from datanas.analysis.ablations import write_csv
    from datanas.engine.run_files import write_json_atomic
    import keras

    from data_tf.search_inputs import make_search_inputs
    from datanas.searching.config import SearchConfig
    from datanas.searching.runs import build_search
    from datanas.spaces.darts_cnn.space import SupernetShape
    from datanas.searching.searcher import Searcher
    from datanas.tasks import ClassificationTask

    try:
        dataset = load_image_dataset(FLAGS.dataset, FLAGS.data_dir, image_size=FLAGS.image_size)
    except (DatasetNotFoundError, ValueError) as error:
        sys.exit(f"arch_signal: error: {error}")
    inputs = make_search_inputs(dataset, batch_size=FLAGS.batch_size,
                                train_size=FLAGS.train_size or 3000,
                                validation_fraction=FLAGS.validation_fraction, seed=FLAGS.seed)
    keras.utils.set_random_seed(FLAGS.seed)
    shape = SupernetShape(num_cells=FLAGS.layers, init_channels=FLAGS.init_channels,
                          num_nodes=FLAGS.nodes, num_samples=4)
    model, config = build_search("data", dataset.num_classes, dataset.image_shape,
                                 SearchConfig(epochs=1, seed=FLAGS.seed, execution="host"),
                                 shape)
    searcher = Searcher(model, config, steps_per_epoch=inputs.steps_per_epoch,
                        global_batch_size=FLAGS.batch_size)
    task = ClassificationTask(dataset.num_classes)
    # The measurement batches: fixed, augmented training batches (epoch 10**6
    # is never one of the warm-up epochs).
    batches = list(inputs.train(10 ** 6).take(FLAGS.batches))

    start = time.time()
    rows = measure_during_warmup(
        searcher, task, inputs.train, batches, estimators, warmups, FLAGS.draws, seed=FLAGS.seed,
        log=lambda text: print(f"{text} ({time.time() - start:.0f} s)", flush=True))
    os.makedirs(FLAGS.model_dir, exist_ok=True)
    write_csv(os.path.join(FLAGS.model_dir, "arch_signal.csv"),
              [{k: row[k] for k in COLUMNS} for row in rows])
    write_json_atomic(output, {"settings": settings, "rows": rows,
                               "seconds": time.time() - start})
    print(f"Wrote {output}")


if __name__ == "__main__":
    app.run(main)
