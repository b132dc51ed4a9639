"""The README's benchmark commands run end to end at tiny sizes.

These check that the scripts work and report what the README quotes (every
variant measured, ratios against the child, both skip forms); they assert no
timing, which would depend on the machine.
"""

import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
TINY = ["--init_channels=4", "--batch_size=4", "--image_size=8"]


def _run(args):
    proc = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_search_step_benchmark_measures_every_variant(tmp_path):
    output = tmp_path / "step.json"
    stdout = _run(["benchmarks.search_step", "--layers=3", *TINY, "--warmup=1", "--steps=2",
                   "--variants=child,egs2-host,egs2-sampled-host", f"--output={output}"])
    results = json.loads(output.read_text())
    assert [r["variant"] for r in results] == ["child", "egs2-host", "egs2-sampled-host"]
    for r in results:
        assert r["build_and_first_step_s"] > 0 and r["median_step_s"] > 0
        assert r["peak_rss_steps_gb"] > 0.1 and r["resident_between_steps_gb"] > 0.1
    # The child is one sampled network: fewer parameters than the supernet.
    assert results[0]["params"] < results[1]["params"]
    rows = {line.split()[0]: line.split() for line in stdout.splitlines()
            if line.split() and line.split()[0] in ("child", "egs2-host") and len(line.split()) > 8}
    ratio = results[1]["median_step_s"] / results[0]["median_step_s"]
    assert rows["child"][-1] == "1.00" and rows["egs2-host"][-1] == f"{ratio:.2f}"
    assert "3 cells, C=4, batch 4, 8x8x3" in stdout


def test_search_step_benchmark_refuses_too_few_cells():
    proc = subprocess.run([sys.executable, "-m", "benchmarks.search_step", "--layers=2"],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "--layers=2: 2 is not integer >= 3" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_edge_skip_benchmark_times_both_skip_forms():
    stdout = _run(["benchmarks.edge_skip", "--edges=2", "--channels=4", "--batch_size=4",
                   "--image_size=8", "--codes=1", "--strides=1"])
    rows = re.findall(r"^(cond|examples)\s+1\s+([0-9.]+)\s+([0-9.]+)$", stdout, re.MULTILINE)
    assert [r[0] for r in rows] == ["cond", "examples"]
    assert all(float(build) > 0 and float(step) > 0 for _, build, step in rows)


def test_the_break_even_is_where_both_whole_runs_take_equally_long():
    """The split puts each run's wall time back together exactly, and at the
    break-even step count the host-driven and the compiled run cost the same
    (the figures of benchmarks/results/execution_break_even_cpu_2core.json)."""
    from benchmarks.execution_break_even import break_even_steps, split_costs

    host = split_costs(350.3, 140, [180.1, 145.9])
    graph = split_costs(381.3, 140, [270.3, 84.7])
    for run in (host, graph):
        assert run["fixed_s"] + run["steps"] * run["step_s"] == pytest.approx(run["wall_s"])
    steps = break_even_steps(host, graph)
    assert 150 < steps < 200
    assert (host["fixed_s"] + steps * host["step_s"]
            == pytest.approx(graph["fixed_s"] + steps * graph["step_s"]))
    assert break_even_steps(graph, host) is None   # a faster host step wins at every length
