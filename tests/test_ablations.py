"""Ablation runner: plans, a tiny real gap ablation, seeds with retraining, figures."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from datanas.analysis.ablations import (RetrainSettings, SearchData, plan_runs, plot_ablation,
                                        summarize)
from trainers.ablation_runner import run_ablation
from datanas.engine.run_lock import acquire_run_lock, release_run_lock
from datanas.search.config import SearchConfig
from datanas.search.runs import SupernetShape

PRIMITIVES = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


# run_ablation seeds the global generators before each run, as its command
# does: each test leaves them as it found them for the next in this process.
pytestmark = pytest.mark.usefixtures("global_seed")


def test_plans():
    gap = plan_runs("gap", methods=["data", "darts", "gdas"], num_samples=4, m_values=None,
                    seeds=[3])
    assert [(r.method, r.num_samples, r.seed) for r in gap] == [
        ("data", 4, 3), ("darts", 4, 3), ("gdas", 1, 3)]
    sweep = plan_runs("num_samples", methods=[], num_samples=4, m_values=[1, 2, 7], seeds=[3])
    assert [(r.method, r.num_samples) for r in sweep] == [("data", 1), ("data", 2), ("data", 7)]
    # Every table takes every seed (mean +- std over seeds).
    assert [(r.method, r.seed) for r in plan_runs(
        "gap", methods=["data", "gdas"], num_samples=4, m_values=None, seeds=[0, 1])] == [
        ("data", 0), ("data", 1), ("gdas", 0), ("gdas", 1)]
    assert [r.name for r in plan_runs("num_samples", methods=[], num_samples=4,
                                      m_values=[1, 7], seeds=[0, 1])] == [
        "data_M1_seed0", "data_M1_seed1", "data_M7_seed0", "data_M7_seed1"]
    seeds = plan_runs("seeds", methods=["data", "random"], num_samples=4, m_values=None,
                      seeds=[0, 1])
    assert [r.name for r in seeds] == ["data_M4_seed0", "data_M4_seed1", "random_seed0",
                                       "random_seed1"]
    # Same method, M and seed -> same run directory (shared between ablations).
    assert gap[0].name == sweep[0].name.replace("M1", "M4") == "data_M4_seed3"
    assert seeds[0].name == "data_M4_seed0"
    assert len({(r.method, r.num_samples, r.seed) for r in gap + sweep}) == len(gap + sweep)
    # The paper's Table 8 row is DATA M=7: the gap table names it as the seeds table does,
    # and reads back the seeds table's search of it.
    gap_m7 = plan_runs("gap", methods=["data_M7"], num_samples=4, m_values=None, seeds=[0])
    assert [(r.name, r.method, r.num_samples, r.label) for r in gap_m7] == [
        ("data_M7_seed0", "data", 7, "data_M7")]
    assert gap_m7 == plan_runs("seeds", methods=["data_M7"], num_samples=4, m_values=None,
                               seeds=[0])
    with pytest.raises(ValueError, match="'random'"):
        plan_runs("gap", methods=["random"], num_samples=4, m_values=None, seeds=[0])
    with pytest.raises(ValueError, match="ablation must be one of"):
        plan_runs("table9", methods=[], num_samples=4, m_values=None, seeds=[0])
    # One seeds table with DATA M=4 and M=7: the M=7 runs are the num_samples
    # sweep's directories, and the table names them apart.
    both = plan_runs("seeds", methods=["data", "data_M7", "gdas"], num_samples=4,
                     m_values=None, seeds=[0])
    assert [(r.name, r.method, r.num_samples, r.label) for r in both] == [
        ("data_M4_seed0", "data", 4, None), ("data_M7_seed0", "data", 7, "data_M7"),
        ("gdas_seed0", "gdas", 1, None)]
    assert both[1].name == sweep[2].name.replace("seed3", "seed0")
    for bad in ("data_M0", "data_Mx", "dart"):
        with pytest.raises(ValueError, match=f"unknown method '{bad}'.*data_M<m>"):
            plan_runs("seeds", methods=[bad], num_samples=4, m_values=None, seeds=[0])


def _tiny(tmp_path, ablation, **kwargs):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    from data_tf.image_datasets import load_image_dataset

    return run_ablation(
        ablation, load_image_dataset("digits"), str(tmp_path),
        base_config=SearchConfig(epochs=2, arch_learning_rate=3e-3),
        shape=SupernetShape(num_cells=3, init_channels=4, num_nodes=2, primitives=PRIMITIVES),
        data=SearchData(batch_size=32, train_size=500), **{"verbose": 0, **kwargs})


def test_gap_ablation_on_digits(tmp_path, capsys):
    rows, summary = _tiny(tmp_path, "gap", bn_recalibration_batches=5)
    assert [r["method"] for r in rows] == ["data", "darts", "gdas"]
    for row in rows:
        assert row["gap"] == pytest.approx(row["supernet_valid_accuracy"]
                                           - row["child_valid_accuracy"])
        assert 0.0 <= row["child_valid_accuracy_recalibrated_bn"] <= 1.0
        final = json.loads((tmp_path / "runs" / row["run"] / "search_result.json").read_text())
        assert final["child_valid_accuracy_inherited_weights"] == row["child_valid_accuracy"]
        # The search's cost is its epochs' wall-clock, whichever process ran them.
        epochs = [json.loads(line) for line in
                  (tmp_path / "runs" / row["run"] / "metrics.jsonl").read_text().splitlines()]
        assert row["search_seconds"] == round(sum(e["epoch_seconds"] for e in epochs), 1)
    assert summary["by_method"]["darts"]["mean"] == pytest.approx(rows[1]["gap"])
    with open(tmp_path / "gap.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [t["method"] for t in table] == ["data", "darts", "gdas"]
    assert float(table[0]["gap"]) == pytest.approx(rows[0]["gap"])
    assert (tmp_path / "gap.png").read_bytes()[:8] == PNG_SIGNATURE
    # Rerunning reads the finished runs back instead of searching again ...
    capsys.readouterr()
    again, _ = _tiny(tmp_path, "gap", bn_recalibration_batches=5, verbose=1)
    assert again == rows
    assert capsys.readouterr().out.count("searched earlier with the same settings") == 3
    # ... but never a run of another budget.
    from datanas.engine.run_identity import RunRefused
    from data_tf.image_datasets import load_image_dataset
    with pytest.raises(RunRefused, match=r"epochs: run 2, now 3"):
        run_ablation("gap", load_image_dataset("digits"), str(tmp_path),
                     base_config=SearchConfig(epochs=3, arch_learning_rate=3e-3),
                     shape=SupernetShape(num_cells=3, init_channels=4, num_nodes=2,
                                         primitives=PRIMITIVES),
                     data=SearchData(batch_size=32, train_size=500), bn_recalibration_batches=5,
                     verbose=0)


def test_another_rule_s_cell_is_retrained_from_the_same_search(tmp_path):
    """--retrain_rule=darts: DATA's search is run once; its top-2 ("darts"
    rule) cell is retrained beside it, in its own row, directory and table,
    leaving the search's own row as it was."""
    retrain = RetrainSettings(layers=3, init_channels=4, epochs=2, batch_size=32, train_size=300)
    rows, _ = _tiny(tmp_path, "seeds", methods=["data"], retrain=retrain)
    searched = json.loads((tmp_path / "runs" / "data_M4_seed0" / "ablation_row.json").read_text())
    rule_rows, summary = _tiny(tmp_path, "seeds", methods=["data"], retrain=retrain,
                               retrain_rule="darts")
    run = tmp_path / "runs" / "data_M4_seed0"
    assert json.loads((run / "ablation_row.json").read_text()) == searched
    [row] = rule_rows
    assert row["method"] == "data_darts_rule" and row["derivation"] == "darts"
    assert row["pairs_per_node_normal"] == 2.0 and rows[0]["derivation"] == "sample"
    assert row["search_seconds"] == rows[0]["search_seconds"]
    assert (run / "retrain_darts").is_dir() and (run / "ablation_row_darts.json").exists()
    assert 0.0 <= row["retrain_test_accuracy"] <= 1.0
    # Validation every epoch, the test split once, after the last.
    epochs = [json.loads(line) for line in
              (run / "retrain_darts" / "metrics.jsonl").read_text().splitlines()]
    assert [("valid_accuracy" in e, "test_accuracy" in e) for e in epochs] == [
        (True, False), (True, True)]
    assert epochs[-1]["test_accuracy"] == row["retrain_test_accuracy"]
    assert list(summary["by_method"]) == ["data_darts_rule"]
    with open(tmp_path / "seeds_darts_rule.csv") as handle:
        assert [t["method"] for t in csv.DictReader(handle)] == ["data_darts_rule"]
    again, _ = _tiny(tmp_path, "seeds", methods=["data"], retrain=retrain, retrain_rule="darts")
    assert again == rule_rows   # read back, not retrained
    # A row of an earlier version (the method's own child columns) is corrected in place.
    stale = {**json.loads((run / "ablation_row_darts.json").read_text()),
             "child_valid_accuracy": 0.5}
    (run / "ablation_row_darts.json").write_text(json.dumps(stale))
    assert _tiny(tmp_path, "seeds", methods=["data"], retrain=retrain,
                 retrain_rule="darts")[0] == rule_rows
    assert json.loads((run / "ablation_row_darts.json").read_text())["child_valid_accuracy"] \
        is None
    with pytest.raises(ValueError, match="random search has no derivation rules"):
        _tiny(tmp_path, "seeds", methods=["data", "random"], retrain=retrain,
              retrain_rule="darts")
    with pytest.raises(ValueError, match="darts's own genotype.json is already its darts-rule"):
        _tiny(tmp_path, "seeds", methods=["data", "darts"], retrain=retrain,
              retrain_rule="darts")
    assert row["child_valid_accuracy"] is None and row["gap"] is None   # not this cell's


def test_a_bad_retrain_rule_is_refused_before_anything_is_written(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "trainers.ablations", "--ablation=gap", "--retrain_rule=darts",
         "--dataset=digits", f"--model_dir={tmp_path / 'ab'}"],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "ablations: error: --retrain_rule applies to the num_samples and seeds ablations (they "
        "retrain); got ablation 'gap'.")
    assert not (tmp_path / "ab").exists() or not os.listdir(tmp_path / "ab")


def test_one_search_serves_the_seeds_and_the_m_tables(tmp_path, capsys):
    """DATA with M=2 searched for the seeds table (labelled data_M2) is read
    back, not searched again, by the M table, which names it by its M."""
    retrain = RetrainSettings(layers=3, init_channels=4, epochs=1, batch_size=32, train_size=300)
    seeds_rows, _ = _tiny(tmp_path, "seeds", methods=["data_M2"], retrain=retrain)
    capsys.readouterr()
    m_rows, summary = _tiny(tmp_path, "num_samples", m_values=[2], retrain=retrain, verbose=1)
    assert "data_M2_seed0: searched earlier with the same settings" in capsys.readouterr().out
    assert seeds_rows[0]["method"] == "data_M2" and m_rows[0]["method"] == "data"
    assert {k: v for k, v in m_rows[0].items() if k != "method"} == {
        k: v for k, v in seeds_rows[0].items() if k != "method"}
    assert summary["by_M"][0]["M"] == 2


def test_seeds_ablation_command_retrains_and_aggregates(tmp_path):
    """The README's `python -m trainers.ablations` command at tiny settings:
    random search keeps it short (the gap test above runs the supernet
    methods through the library)."""
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    out = tmp_path / "ab"
    def command(seeds):
        return [
            sys.executable, "-m", "trainers.ablations", "--ablation=seeds", "--methods=random",
            f"--seeds={seeds}", "--random_candidates=2", "--dataset=digits", "--train_size=500",
            "--batch_size=32", "--epochs=2", "--layers=3", "--init_channels=4", "--nodes=2",
            f"--primitives={','.join(PRIMITIVES)}", "--retrain_layers=3", "--retrain_channels=4",
            "--retrain_epochs=1", f"--model_dir={out}"]

    proc = subprocess.run(command("0,1"), cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "seeds: 2 run(s); CSV, PNG and summary in" in proc.stdout
    with open(out / "seeds.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["method"], r["seed"]) for r in rows] == [("random", "0"), ("random", "1")]
    values = [float(r["retrain_test_accuracy"]) for r in rows]
    assert all(int(r["parameters"]) > 0 for r in rows)
    assert all(0.0 <= v <= 1.0 for v in values)
    summary = json.loads((out / "seeds_summary.json").read_text())
    assert summary["by_method"]["random"]["mean"] == pytest.approx(np.mean(values))
    assert summary["by_method"]["random"]["std"] == pytest.approx(np.std(values, ddof=1))
    assert (out / "seeds.png").read_bytes()[:8] == PNG_SIGNATURE
    assert json.loads((out / "seeds.flags.json").read_text())["seeds"] == ["0", "1"]
    table_files = {name: (out / name).read_bytes() for name in (
        "seeds.csv", "seeds_summary.json", "seeds.flags.json", "seeds.flagfile.txt")}
    # A rerun asking for a third seed that another live process is writing is
    # refused there: the table of seeds 0-1 and its flag record stay as they were
    # (the flags are written with the table, never before it).
    os.makedirs(out / "runs" / "random_seed2")
    acquire_run_lock(str(out / "runs" / "random_seed2"))
    try:
        proc = subprocess.run(command("0,1,2"), cwd=ROOT, env=ENV, capture_output=True,
                              text=True, timeout=900)
    finally:
        release_run_lock(str(out / "runs" / "random_seed2"))
    assert proc.returncode != 0 and "is being written by" in proc.stderr, proc.stderr[-2000:]
    assert {name: (out / name).read_bytes() for name in table_files} == table_files
    with pytest.raises(ValueError, match="RetrainSettings"):
        _tiny(tmp_path / "other", "seeds", methods=["data"])


def test_num_samples_figure_and_summary(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [{"M": m, "seed": seed, "parameters": 1000 * m, "pairs_per_node_normal": m / 2,
             "skip_connects_normal": 0, "retrain_valid_accuracy": 0.8 + m / 100,
             "retrain_test_accuracy": 0.79 + m / 100 + seed / 1000, "test_examples": 10000}
            for m in (1, 2, 4) for seed in (0, 1, 2)]
    summary = summarize("num_samples", rows)
    assert [entry["M"] for entry in summary["by_M"]] == [1, 2, 4]
    last = summary["by_M"][-1]
    assert last["runs"] == 3 and last["mean"] == pytest.approx(0.83 + 0.001)
    assert last["std"] == pytest.approx(0.001)
    # One accuracy near 0.83 on 10,000 test images is uncertain by sqrt(p(1-p)/n) ~ 0.0038,
    # more than these seeds differ: the table says so beside the spread.
    assert last["test_standard_error"] == pytest.approx(np.sqrt(0.831 * 0.169 / 10000), rel=1e-3)
    assert summarize("seeds", [dict(r, method="data") for r in rows])["by_method"]["data"][
        "test_standard_error"] == pytest.approx(np.mean(
            [np.sqrt(r["retrain_test_accuracy"] * (1 - r["retrain_test_accuracy"]) / 10000)
             for r in rows]))
    plot_ablation("num_samples", rows, summary, str(tmp_path / "m.png"))
    assert (tmp_path / "m.png").read_bytes()[:8] == PNG_SIGNATURE


def test_cost_lambda_plan_summary_and_figure(tmp_path):
    """One DATA search per lam (same seed, M, cost in the run names), and a
    figure of retrained accuracy against parameters and multiply-adds."""
    pytest.importorskip("matplotlib")
    specs = plan_runs("cost_lambda", methods=["data"], num_samples=4, m_values=None,
                      seeds=[3], lambda_values=[1.0, 0.25], cost="madds")
    assert [(s.name, s.cost_lambda, s.seed) for s in specs] == [
        ("data_M4_madds_lam1_seed3", 1.0, 3), ("data_M4_madds_lam0.25_seed3", 0.25, 3)]
    with pytest.raises(ValueError, match=r"lambda values must be in \[0, 1\]"):
        plan_runs("cost_lambda", methods=["data"], num_samples=4, m_values=None, seeds=[0],
                  lambda_values=[1.5])
    rows = [{"cost_lambda": lam, "cost": "params", "parameters": 2e5 * (1 + lam),
             "multiply_adds": 3e7 * (1 + lam), "retrain_valid_accuracy": 0.8 + lam / 20,
             "retrain_test_accuracy": 0.79 + lam / 20} for lam in (1.0, 0.5, 0.25)]
    summary = summarize("cost_lambda", rows)
    assert [entry["cost_lambda"] for entry in summary["by_lambda"]] == [1.0, 0.5, 0.25]
    plot_ablation("cost_lambda", rows, summary, str(tmp_path / "lam.png"))
    assert (tmp_path / "lam.png").read_bytes()[:8] == PNG_SIGNATURE


def _learn_preset_command(tmp_path, method):
    return [sys.executable, "-m", "trainers.ablations",
            f"--flagfile={ROOT}/docs/ablations/learn_preset/seeds.flagfile.txt",
            f"--methods={method}", "--seeds=0", f"--model_dir={tmp_path}"]


def test_committed_runs_are_read_back_only_where_the_method_is_unchanged(tmp_path):
    """DARTS is the same method as when the committed seed-0 run was made, so
    the seeds table reads it back (nothing runs); DATA changed (full gradient,
    edge mean, node_sample), so its earlier run is refused in one line
    instead of being read back as the current method's."""
    import shutil
    for name in ("darts_seed0", "data_M4_seed0"):
        shutil.copytree(f"{ROOT}/docs/ablations/learn_preset/runs/{name}",
                        tmp_path / "runs" / name)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    darts = subprocess.run(_learn_preset_command(tmp_path, "darts"), cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=600)
    assert darts.returncode == 0, darts.stderr[-2000:]
    assert "read back" in darts.stdout and "search darts" not in darts.stdout
    data = subprocess.run(_learn_preset_command(tmp_path, "data"), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert data.returncode != 0
    assert data.stderr.strip().splitlines()[-1] == (
        f"ablations: error: {tmp_path}/runs/data_M4_seed0 was searched by an earlier version of "
        "method 'data' (before its settings were recorded as resolved; "
        "docs/history/ablations_sampled_sum.md says what it measured), so it is not read back "
        "as this method's run; use a new --model_dir.")
