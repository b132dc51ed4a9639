"""Host-driven against compiled search steps, side by side, on a real search.

    python -m benchmarks.execution_break_even                  # the cpu preset, 2 epochs each
    python -m benchmarks.execution_break_even --epochs=3 --output=out.json

Runs ``trainers.search_cifar`` twice with the same settings, once with
``--execution=host`` and once with ``--execution=graph``, each in its own
process and its own temporary run directory.  From each run's
``metrics.jsonl`` (``epoch_seconds``) and ``search_result.json`` (steps) it
splits the process's wall-clock time into

* a per-step cost: the last epoch's seconds over its steps (the epoch's
  validation pass shared out over its steps), and
* a fixed cost: everything else (imports, data, building the supernet,
  tracing and compiling the steps, the end-of-search derivation).

The break-even is the number of search steps below which the host-driven run
finishes first: (fixed_graph - fixed_host) / (step_host - step_graph).
``execution="auto"`` uses the host-driven step up to
``HOST_AUTO_MAX_STEPS`` steps (``datanas/searching/searcher.py``), which is
set from this measurement.  Nothing else should run on the machine while it
runs: both processes use every core.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags as absl_flags

FLAGS = absl_flags.FLAGS


def define_flags():
    """The command line (defined only when run as a script, so importing
    the cost arithmetic defines no flags)."""
    absl_flags.DEFINE_string("preset", "cpu", "The search trainer's --preset.")
    absl_flags.DEFINE_integer("epochs", 2, "Search epochs of each run (at least 2: the last "
                              "epoch gives the per-step cost).", lower_bound=2)
    absl_flags.DEFINE_list("search_flags", [], "More flags for trainers.search_cifar, e.g. "
                           "--search_flags=--layers=8,--init_channels=16.")
    absl_flags.DEFINE_string("output", None, "Optional JSON file for the results.")


def measure(execution, workdir):
    """Runs one search; returns its wall time split into fixed and per-step cost."""
    model_dir = os.path.join(workdir, execution)
    command = [sys.executable, "-m", "trainers.search_cifar", f"--preset={FLAGS.preset}",
               f"--epochs={FLAGS.epochs}", f"--execution={execution}",
               f"--model_dir={model_dir}", *FLAGS.search_flags]
    print(f"running {' '.join(command[1:])} ...", flush=True)
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"the {execution} search failed (exit {proc.returncode}):\n"
                 f"{proc.stderr[-3000:]}")
    with open(os.path.join(model_dir, "search_result.json"), encoding="utf-8") as f:
        result = json.load(f)
    with open(os.path.join(model_dir, "metrics.jsonl"), encoding="utf-8") as f:
        epochs = [json.loads(line) for line in f if line.strip()]
    if result.get("execution") != execution:
        sys.exit(f"the run reports execution={result.get('execution')!r}, not {execution!r}")
    return {"execution": execution,
            **split_costs(wall, int(result["steps"]), [e["epoch_seconds"] for e in epochs])}


def split_costs(wall_s, steps, epoch_seconds):
    """Splits a run of `steps` steps over len(epoch_seconds) equal epochs,
    which took `wall_s` in all, into a per-step cost (the last epoch's
    seconds over its steps) and a fixed cost (the rest)."""
    step_s = epoch_seconds[-1] / (steps // len(epoch_seconds))
    return {"wall_s": wall_s, "steps": steps, "epoch_seconds": list(epoch_seconds),
            "step_s": step_s, "fixed_s": wall_s - steps * step_s}


def break_even_steps(host, graph):
    """Steps at which both runs take equally long (fixed + steps * step_s);
    None when the host-driven step is not slower (it wins at every length)."""
    saved = host["step_s"] - graph["step_s"]
    return (graph["fixed_s"] - host["fixed_s"]) / saved if saved > 0 else None


def main(argv):
    del argv
    with tempfile.TemporaryDirectory(prefix="datanas-break-even-") as workdir:
        host, graph = measure("host", workdir), measure("graph", workdir)
    break_even = break_even_steps(host, graph)
    print(f"\n{'execution':<10}{'wall s':>9}{'steps':>7}{'fixed s':>9}{'s/step':>8}")
    for r in (host, graph):
        print(f"{r['execution']:<10}{r['wall_s']:>9.1f}{r['steps']:>7}{r['fixed_s']:>9.1f}"
              f"{r['step_s']:>8.3f}")
    if break_even is None:
        print("the host-driven step is not slower: host-driven wins at every length")
    else:
        print(f"break-even: the host-driven search finishes first below {break_even:.0f} steps")
    if FLAGS.output:
        import platform  # pylint: disable=import-outside-toplevel
        with open(FLAGS.output, "w", encoding="utf-8") as f:
            json.dump({"preset": FLAGS.preset, "epochs": FLAGS.epochs,
                       "search_flags": FLAGS.search_flags, "cpu_count": os.cpu_count(),
                       "machine": platform.processor() or platform.machine(),
                       "runs": [host, graph], "break_even_steps": break_even}, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    define_flags()
    app.run(main)
