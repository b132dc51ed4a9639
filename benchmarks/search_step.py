"""Time and memory of one search step: EGS (sparse) vs DARTS mixing vs the child alone.

    python -m benchmarks.search_step                 # 8 cells, C=16, batch 32, 32x32x3
    python -m benchmarks.search_step --variants=egs4,dense --steps=10

Variants: ``egsM`` (joint DATA step, sparse EGS with M samples and the
authors' gradient: undrawn ops forward only), ``egsM-sampled`` (the fast
variant: undrawn ops not computed), ``dense``
(the same step with DARTS softmax mixing, every op computed), a ``-host``
suffix on either (``egs4-host``, ``dense-host``: the host-driven step, see
``datanas/searching/searcher.py``; without it the step is the compiled graph),
``darts2``
(second-order DARTS architecture step + weight step) and ``child`` (a plain
SGD step of one EGS-sampled child, M=4 at the initial logits, built as a
stand-alone NetworkCIFAR of the same size without auxiliary head or
drop-path: the floor the sparse search step can approach).

Each variant runs in its own subprocess (so graph-building memory of one does
not pollute the next) and reports: the one-time graph build + first step,
the median step time over --steps timed steps after --warmup steps, and the
peak resident memory during the timed steps and overall.  Prints a table with
ratios to the dense (DARTS) step, and a memory breakdown: what stays resident
between steps (traced graphs, kernels, variables; freed heap returned to the
OS first) and what one step adds on top of it (activations kept for the
backward pass, gradients) -- the part that computing only the sampled child
saves.  Runs unchanged on a GPU if one is visible (the device is printed, and
its own peak allocation during the steps is reported).
"""

import json
import os
import subprocess
import sys
import threading
import time

from absl import app
from absl import flags as absl_flags

absl_flags.DEFINE_list("variants", ["egs1", "egs4", "egs7", "egs1-sampled", "egs4-sampled",
                                    "egs7-sampled", "dense", "child"],
                       "egsM (sparse EGS with M samples, the authors' full gradient), "
                       "egsM-sampled (undrawn ops not computed), dense (DARTS softmax mixing), "
                       "either with -host (host-driven step; default: compiled graph), "
                       "darts2 (second-order DARTS), child (sampled child network alone).")
absl_flags.DEFINE_integer("layers", 8, "Cells (at least 3: two of them reduction cells).", lower_bound=3)
absl_flags.DEFINE_integer("init_channels", 16, "Channels.")
absl_flags.DEFINE_integer("batch_size", 32, "Batch size.")
absl_flags.DEFINE_integer("image_size", 32, "Input height = width (3 channels).")
absl_flags.DEFINE_integer("warmup", 3, "Untimed steps after the first.")
absl_flags.DEFINE_integer("steps", 10, "Timed steps.")
absl_flags.DEFINE_integer("intra_op_threads", None, "TensorFlow intra-op threads of each "
                          "variant's process (default: TensorFlow's, every core).", lower_bound=1)
absl_flags.DEFINE_integer("inter_op_threads", None, "TensorFlow inter-op threads (default: "
                          "TensorFlow's).", lower_bound=1)
absl_flags.DEFINE_string("output", None, "Optional JSON file for the results.")
absl_flags.DEFINE_string("_worker", None, "Internal: run one variant and print JSON.")
FLAGS = absl_flags.FLAGS


class PeakMemory:
    """Samples this process's resident set size in a background thread."""

    def __init__(self, interval=0.01):
        import psutil
        self._process, self._interval = psutil.Process(), interval
        self.peak, self._running = 0, False

    def _loop(self):
        while self._running:
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(self._interval)

    def __enter__(self):
        self.peak = self._process.memory_info().rss
        self._running = True
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._running = False
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


def _child_step(images, labels):
    """A plain SGD training step of one EGS-sampled child network."""
    from datanas.spaces.darts_cnn.derivation import derive_genotype, logits_of
    from datanas.spaces.darts_cnn.networks import NetworkCIFAR
    from datanas.spaces.darts_cnn.supernet import SearchNetwork
    from datanas.training.trainer import GenotypeTrainer, TrainConfig

    supernet = SearchNetwork(10, init_channels=FLAGS.init_channels, num_cells=FLAGS.layers,
                             num_samples=4, seed=0)
    genotype = derive_genotype(logits_of(supernet), rule="sample", scope=supernet.egs_scope,
                               num_samples=4, primitives=supernet.primitives, seed=0)
    model = NetworkCIFAR(genotype, num_classes=10, init_channels=FLAGS.init_channels,
                         layers=FLAGS.layers, auxiliary=False)
    model.build(tuple(images.shape))
    trainer = GenotypeTrainer(model, TrainConfig(epochs=1, drop_path_prob=0.0),
                              steps_per_epoch=1000)
    return model, lambda: trainer.train_step((images, labels))


def _search_step(variant, images, labels):
    from datanas.searching.config import SearchConfig
    from datanas.searching.searcher import Searcher
    from datanas.spaces.darts_cnn.supernet import SearchNetwork

    execution = "graph"
    if variant.endswith("-host"):
        variant, execution = variant[:-len("-host")], "host"
    config = SearchConfig(epochs=1, execution=execution)
    if variant == "dense":
        kwargs = dict(weighting="softmax", mode="dense")
    elif variant == "darts2":
        kwargs = dict(weighting="softmax", mode="dense")
        config = SearchConfig(epochs=1, search_mode="alternate", unrolled=True,
                              derivation="darts", execution=execution)
    elif variant.startswith("egs") and variant[3:].split("-")[0].isdigit() and (
            variant[3:].split("-")[1:] in ([], ["sampled"])):
        number, *gradient = variant[3:].split("-")
        kwargs = dict(num_samples=int(number), egs_gradient=gradient[0] if gradient else "full")
    else:
        raise app.UsageError(f"unknown variant {variant!r}; use egsM or egsM-sampled (e.g. "
                             "egs4), dense (each optionally with -host), darts2 or child.")
    model = SearchNetwork(10, init_channels=FLAGS.init_channels, num_cells=FLAGS.layers,
                          seed=0, **kwargs)
    model.build(tuple(images.shape))
    searcher = Searcher(model, config, steps_per_epoch=1000)
    if config.search_mode == "alternate":
        def step():
            searcher.unrolled_arch_step((images, labels), (images, labels))
            return searcher.weight_step((images, labels))
        return model, step
    return model, lambda: searcher.joint_step((images, labels))


def run_variant(variant):
    import numpy as np
    import tensorflow as tf

    from datanas.engine.strategy import configure_threads

    configure_threads(FLAGS.intra_op_threads, FLAGS.inter_op_threads)
    size = FLAGS.image_size
    images = tf.random.stateless_normal([FLAGS.batch_size, size, size, 3], seed=[0, 0])
    labels = tf.random.stateless_uniform([FLAGS.batch_size], seed=[0, 1], maxval=10,
                                         dtype=tf.int32)
    if variant == "child":
        model, step = _child_step(images, labels)
    else:
        model, step = _search_step(variant, images, labels)
    with PeakMemory() as build_memory:
        start = time.perf_counter()
        float(step()["loss"])
        first = time.perf_counter() - start
        for _ in range(FLAGS.warmup):
            float(step()["loss"])
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        tf.config.experimental.reset_memory_stats(gpus[0].name)
    times = []
    with PeakMemory() as step_memory:
        for _ in range(FLAGS.steps):
            start = time.perf_counter()
            float(step()["loss"])
            times.append(time.perf_counter() - start)
    result = {"variant": variant, "device": (gpus or tf.config.list_logical_devices("CPU"))[0].name,
              "params": int(model.count_params()),
              "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
              "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
              "build_and_first_step_s": first, "median_step_s": float(np.median(times)),
              "p90_step_s": float(np.percentile(times, 90)),
              "peak_rss_steps_gb": step_memory.peak / 2**30,
              "peak_rss_overall_gb": max(build_memory.peak, step_memory.peak) / 2**30}
    if gpus:
        # What limits the batch size on an accelerator: its own peak allocation.
        result["device_peak_gb"] = (
            tf.config.experimental.get_memory_info(gpus[0].name)["peak"] / 2**30)
    result.update(_memory_breakdown(step))
    return result


def _memory_breakdown(step):
    """Splits the resident memory of the steps into what stays allocated
    between steps (traced graphs, kernels, variables) and what one step adds
    on top (activations kept for backprop, gradients): the part EGS can cut.

    Heap freed after graph building is first returned to the OS
    (glibc malloc_trim), else it would count as resident although it is
    free.  Empty where glibc is not the allocator.
    """
    import ctypes  # pylint: disable=import-outside-toplevel

    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return {}
    trim(0)
    with PeakMemory() as memory:
        baseline = memory.peak
        for _ in range(max(FLAGS.steps // 2, 1)):
            float(step()["loss"])
    return {"resident_between_steps_gb": baseline / 2**30,
            "step_working_set_gb": (memory.peak - baseline) / 2**30}


def main(argv):
    del argv
    if FLAGS._worker:
        print("RESULT " + json.dumps(run_variant(FLAGS._worker)), flush=True)
        return
    results = []
    passthrough = [f"--{name}={FLAGS[name].value}" for name in
                   ("layers", "init_channels", "batch_size", "image_size", "warmup", "steps",
                    "intra_op_threads", "inter_op_threads")
                   if FLAGS[name].value is not None]
    for variant in FLAGS.variants:
        print(f"running {variant} ...", flush=True)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        proc = subprocess.run([sys.executable, "-m", "benchmarks.search_step",
                               f"--_worker={variant}", *passthrough],
                              capture_output=True, text=True, env=env)
        lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            print(f"{variant} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        results.append(json.loads(lines[-1][len("RESULT "):]))
    if not results:
        sys.exit("no variant ran")
    dense = next((r for r in results if r["variant"] == "dense"), None)
    child = next((r for r in results if r["variant"] == "child"), None)

    def ratio(r, reference, key):
        return f"{r[key] / reference[key]:.2f}" if reference else "-"

    print(f"\nsearch step, {FLAGS.layers} cells, C={FLAGS.init_channels}, batch "
          f"{FLAGS.batch_size}, {FLAGS.image_size}x{FLAGS.image_size}x3, device "
          f"{results[0]['device']}, threads intra {FLAGS.intra_op_threads or 'TF default'} / "
          f"inter {FLAGS.inter_op_threads or 'TF default'}")
    print(f"{'variant':10} {'build+1st s':>11} {'median s':>9} {'p90 s':>7} "
          f"{'RSS steps GB':>12} {'RSS peak GB':>11} {'step/dense':>10} {'mem/dense':>9} "
          f"{'step/child':>10}")
    for r in results:
        print(f"{r['variant']:10} {r['build_and_first_step_s']:11.1f} {r['median_step_s']:9.3f} "
              f"{r['p90_step_s']:7.3f} {r['peak_rss_steps_gb']:12.2f} "
              f"{r['peak_rss_overall_gb']:11.2f} {ratio(r, dense, 'median_step_s'):>10} "
              f"{ratio(r, dense, 'peak_rss_steps_gb'):>9} {ratio(r, child, 'median_step_s'):>10}")
    breakdown = [r for r in results if "step_working_set_gb" in r]
    if breakdown:
        dense_set = next((r["step_working_set_gb"] for r in breakdown if r["variant"] == "dense"),
                         None)
        print(f"\nmemory after returning freed heap to the OS:\n{'variant':10} "
              f"{'resident between steps GB':>25} {'one step adds GB':>16} {'adds/dense':>10}")
        for r in breakdown:
            share = (f"{r['step_working_set_gb'] / dense_set:.2f}" if dense_set else "-")
            print(f"{r['variant']:10} {r['resident_between_steps_gb']:25.2f} "
                  f"{r['step_working_set_gb']:16.2f} {share:>10}")
    if FLAGS.output:
        with open(FLAGS.output, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    app.run(main)
