"""Ablation runner: plans, a tiny real gap ablation, seeds with retraining, figures."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from datanas.analysis.ablations import (RetrainSettings, SearchData, plan_runs, plot_ablation,
                                        summarize, summary_rows, write_markdown)
from trainers.ablation_runner import run_ablation
from datanas.engine.run_lock import acquire_run_lock, release_run_lock
from datanas.searching.config import SearchConfig
from datanas.spaces.darts_cnn.space import SupernetShape

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
    for bad in ("data_M0", "data_Mx", "dart", "data_sampled_M0", "data_full"):
        with pytest.raises(ValueError, match=f"unknown method '{bad}'.*data_M<m>.*data_sampled"):
            plan_runs("seeds", methods=[bad], num_samples=4, m_values=None, seeds=[0])
    # DATA with the sampled gradient beside DATA's own: its own runs, named apart.
    sampled = plan_runs("seeds", methods=["data", "data_sampled", "data_sampled_M7"],
                        num_samples=4, m_values=None, seeds=[0])
    assert [(r.name, r.method, r.num_samples, r.label, r.egs_gradient) for r in sampled] == [
        ("data_M4_seed0", "data", 4, None, None),
        ("data_sampled_M4_seed0", "data", 4, "data_sampled", "sampled"),
        ("data_sampled_M7_seed0", "data", 7, "data_sampled_M7", "sampled")]


def _shared_settings():
    from datanas.analysis.ablations import SearchData as Data
    return dict(base_config=SearchConfig(epochs=20, arch_learning_rate=3e-3),
                shape=SupernetShape(num_cells=3, init_channels=4, num_nodes=2,
                                    primitives=PRIMITIVES),
                data=Data(batch_size=32, train_size=500))


def test_a_variant_searches_with_its_gradient_and_data_s_identity_is_unchanged():
    """data_sampled resolves to the sampled gradient (its identity says so);
    a plain DATA run's identity has no trace of the variants (runs made
    before them are read back); random search shares the search's epochs
    out over its candidates, the remainder to the first ones."""
    from trainers.ablation_runner import _run_identity
    settings = _shared_settings()
    dataset = type("Dataset", (), {"name": "digits"})
    data, sampled, random = plan_runs("seeds", methods=["data", "data_sampled", "random"],
                                      num_samples=4, m_values=None, seeds=[0])

    def identity(spec, candidates=8):
        return _run_identity(spec, dataset, settings["base_config"], settings["shape"],
                             settings["data"], candidates, 20)
    assert "egs_gradient" not in identity(data)["run"]
    assert "egs_gradient" not in identity(data)["search"]
    assert identity(data)["resolved"]["network"]["egs_gradient"] == "full"
    assert identity(sampled)["resolved"]["network"]["egs_gradient"] == "sampled"
    assert identity(sampled)["run"]["egs_gradient"] == "sampled"
    assert identity(random)["resolved"]["epochs_per_candidate"] == [3, 3, 3, 3, 2, 2, 2, 2]
    assert identity(random)["resolved"]["config"]["epochs"] == 20
    assert identity(random, 6)["resolved"]["epochs_per_candidate"] == [4, 4, 3, 3, 3, 3]
    # Images resized (--image_size) are another search; at their own size the
    # identity has no such key, as before the flag was read.
    resized = _run_identity(data, dataset, settings["base_config"], settings["shape"],
                            settings["data"], 8, 20, image_size=32)
    assert "image_size" not in identity(data) and resized["image_size"] == 32
    assert {k: v for k, v in resized.items() if k != "image_size"} == identity(data)


def test_retrain_rule_is_any_rule_of_the_space():
    from datanas.analysis.ablations import RetrainSettings as Retrain
    from datanas.spaces import get_space
    from trainers.ablation_runner import ablation_specs
    settings = _shared_settings()
    del settings["data"]
    rules = get_space("darts_cnn").derivation_rules
    assert {"node_sample", "node_infer", "darts"} <= set(rules)
    for rule in rules:
        methods = ["data_sampled", "random"] + (["darts"] if rule != "darts" else [])
        if rule == "node_sample":   # DATA's own rule: its genotype.json
            methods.remove("data_sampled")
        specs = ablation_specs("seeds", methods=methods, retrain=Retrain(), retrain_rule=rule,
                               **settings)
        assert [s.method for s in specs][-1] == ("darts" if rule != "darts" else "random")
    with pytest.raises(ValueError, match="data's own genotype.json is already its "
                                         "node_sample-rule cell"):
        ablation_specs("seeds", methods=["data"], retrain=Retrain(), retrain_rule="node_sample",
                       **settings)
    with pytest.raises(ValueError, match=r"^--retrain_rule must be a derivation rule of the "
                                         r"darts_cnn space \(node_sample, node_infer, sample, "
                                         r"inclusion, darts\); got 'top2'\.$"):
        ablation_specs("seeds", methods=["data"], retrain=Retrain(), retrain_rule="top2",
                       **settings)


def test_seeds_summary_has_per_seed_values_and_welch_t_against_random(tmp_path):
    from datanas.analysis.ablations import summary_rows, welch_t, write_markdown
    # Welch's t of [1, 2, 3] against [4, 5, 6]: -3 / sqrt(1/3 + 1/3), 4 degrees of freedom.
    t, dof = welch_t([1, 2, 3], [4, 5, 6])
    assert t == pytest.approx(-3 / np.sqrt(2 / 3)) and dof == pytest.approx(4.0)
    # Unequal spreads: the Welch-Satterthwaite degrees of freedom.
    a, b = np.array([0.90, 0.92, 0.94]), np.array([0.80, 0.90])
    va, vb = a.var(ddof=1) / 3, b.var(ddof=1) / 2
    t, dof = welch_t(a, b)
    assert t == pytest.approx((a.mean() - b.mean()) / np.sqrt(va + vb))
    assert dof == pytest.approx((va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 1))
    assert welch_t([0.9], [0.8, 0.7]) == (None, None)
    rows = [{"method": method, "seed": seed, "retrain_test_accuracy": value,
             "test_examples": 1000}
            for method, values in (("data", a), ("random", b)) for seed, value in
            enumerate(values)]
    summary = summarize("seeds", rows)
    entry = summary["by_method"]["data"]
    assert entry["seeds"] == [0, 1, 2] and entry["values"] == pytest.approx(list(a))
    assert entry["welch_t_vs_random"] == pytest.approx(t)
    assert entry["welch_dof_vs_random"] == pytest.approx(dof)
    assert "welch_t_vs_random" not in summary["by_method"]["random"]
    assert "welch_t_vs_random" not in summarize("seeds", rows[:3])["by_method"]["data"]
    table = summary_rows("seeds", summary)
    assert table[0]["method"] == "data" and table[0]["per_seed"] == "0:0.9000 1:0.9200 2:0.9400"
    write_markdown(tmp_path / "s.md", table, "seeds")
    lines = (tmp_path / "s.md").read_text().splitlines()
    assert lines[2].startswith("| method | runs | mean | std |") and "welch_t_vs_random" in lines[2]
    assert lines[4].startswith("| data | 3 | 0.9200 | 0.0200 |")


def _tiny(tmp_path, ablation, **kwargs):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    from data_tf.image_datasets import load_image_dataset

    return run_ablation(
        ablation, load_image_dataset("digits"), str(tmp_path),
        base_config=SearchConfig(epochs=2, arch_learning_rate=3e-3),
        shape=SupernetShape(num_cells=3, init_channels=4, num_nodes=2, primitives=PRIMITIVES),
        data=SearchData(batch_size=32, train_size=500), **{"verbose": 0, **kwargs})


def test_a_rule_s_gap_row_carries_only_that_cell_s_retraining(tmp_path):
    """A search retrained for Table 7 and then read for Table 8: each other
    rule's row has that rule's cell, and the retraining columns of that cell
    when it was retrained (--retrain_rule), never the method's own cell's."""
    from datanas.spaces import get_space
    from datanas.spaces.darts_cnn.genotype import DARTS_V2
    from trainers.ablation_runner import RETRAIN_COLUMNS, _gap_rows

    for rule in get_space("darts_cnn").derivation_rules:
        (tmp_path / f"genotype_{rule}.json").write_text(json.dumps(DARTS_V2.to_dict()))
    own = {"run": "data_M4_seed0", "method": "data", "derivation": "node_sample",
           "supernet_valid_accuracy": 0.8, "child_valid_accuracy": 0.5,
           "parameters": 311418, "retrain_test_accuracy": 0.87, "test_examples": 10000}
    (tmp_path / "ablation_row_darts.json").write_text(json.dumps(
        {**own, "method": "data_darts_rule", "parameters": 150000,
         "retrain_test_accuracy": 0.88}))
    rows = {r["derivation"]: r for r in _gap_rows(None, str(tmp_path), own, None, 0)}
    assert "node_sample" not in rows
    assert rows["darts"]["parameters"] == 150000
    assert rows["darts"]["retrain_test_accuracy"] == 0.88
    for rule in ("node_infer", "sample", "inclusion"):
        assert not set(RETRAIN_COLUMNS) & set(rows[rule]), rule
        assert rows[rule]["supernet_valid_accuracy"] == 0.8
    # A search older than a rule (DARTS' learn-preset runs have no node_sample
    # or node_infer file) has no row for it, and the others still come.
    (tmp_path / "genotype_node_infer.json").unlink()
    older = {**own, "derivation": "darts"}
    assert [r["derivation"] for r in _gap_rows(None, str(tmp_path), older, None, 0)] == [
        "node_sample", "sample", "inclusion"]


def test_gap_ablation_on_digits(tmp_path, capsys):
    """Table 8 for every derivation rule of every method: the search's own
    child (its search_result.json) and every other rule's child, inheriting
    the same supernet's weights, BN statistics as they are and re-estimated."""
    from datanas.spaces import get_space
    rules = get_space("darts_cnn").derivation_rules
    rows, summary = _tiny(tmp_path, "gap", bn_recalibration_batches=5)
    own = [r for r in rows if not r["method"].endswith("_rule")]
    assert [r["method"] for r in own] == ["data", "darts", "gdas"]
    assert [r["derivation"] for r in own] == ["node_sample", "darts", "darts"]
    expected = []
    for row in own:
        expected += [row["method"]] + [f"{row['method']}_{rule}_rule" for rule in rules
                                       if rule != row["derivation"]]
    assert [r["method"] for r in rows] == expected
    for row in rows:
        assert row["gap"] == pytest.approx(row["supernet_valid_accuracy"]
                                           - row["child_valid_accuracy"])
        assert row["gap_recalibrated_bn"] == pytest.approx(
            row["supernet_valid_accuracy"] - row["child_valid_accuracy_recalibrated_bn"])
        assert 0.0 <= row["child_valid_accuracy_recalibrated_bn"] <= 1.0
        run = tmp_path / "runs" / row["run"]
        if row in own:
            final = json.loads((run / "search_result.json").read_text())
            assert final["child_valid_accuracy_inherited_weights"] == row["child_valid_accuracy"]
        else:
            measured = json.loads((run / "gap_rules.json").read_text())["rules"][
                row["derivation"]]
            assert measured["child_valid_accuracy"] == row["child_valid_accuracy"]
            genotype = json.loads((run / f"genotype_{row['derivation']}.json").read_text())
            assert row["pairs_per_node_normal"] == np.mean([len(n) for n in genotype["normal"]])
        # The search's cost is its epochs' wall-clock, whichever process ran them.
        epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert row["search_seconds"] == round(sum(e["epoch_seconds"] for e in epochs), 1)
    # DATA's top-2 child is DARTS' rule on DATA's supernet: a row of its own.
    top2 = next(r for r in rows if r["method"] == "data_darts_rule")
    assert top2["pairs_per_node_normal"] == 2.0
    assert summary["by_method"]["darts"]["mean"] == pytest.approx(own[1]["gap"])
    assert summary["by_method"]["data_node_infer_rule"]["derivation"] == "node_infer"
    with open(tmp_path / "gap.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [t["method"] for t in table] == expected
    assert float(table[0]["gap"]) == pytest.approx(rows[0]["gap"])
    assert (tmp_path / "gap.png").read_bytes()[:8] == PNG_SIGNATURE
    with open(tmp_path / "gap_summary.csv") as handle:
        assert [t["method"] for t in csv.DictReader(handle)] == list(summary["by_method"])
    assert "| data_node_infer_rule |" in (tmp_path / "gap_summary.md").read_text()
    # Rerunning reads the finished runs back instead of searching again; a
    # search made without gap_rules.json has its other rules' children
    # measured from its last checkpoint, as at the end of the search.
    measured = (tmp_path / "runs" / "gdas_seed0" / "gap_rules.json").read_text()
    (tmp_path / "runs" / "gdas_seed0" / "gap_rules.json").unlink()
    capsys.readouterr()
    again, _ = _tiny(tmp_path, "gap", bn_recalibration_batches=5, verbose=1)
    out = capsys.readouterr().out
    assert again == rows
    assert json.loads((tmp_path / "runs" / "gdas_seed0" / "gap_rules.json").read_text()) == \
        json.loads(measured)
    assert out.count("searched earlier with the same settings") == 3
    assert "gdas_seed0: measuring every rule's child from" in out
    # finished_only measures nothing: without gap_rules.json a search keeps only its
    # own row's values; a seed never searched is named, not run.
    (tmp_path / "runs" / "gdas_seed0" / "gap_rules.json").unlink()
    partial, partial_summary = _tiny(tmp_path, "gap", bn_recalibration_batches=5,
                                     seeds=[0, 1], finished_only=True)
    assert not (tmp_path / "runs" / "gdas_seed0" / "gap_rules.json").exists()
    assert [r["method"] for r in partial] == expected
    assert partial[:len(rules) * 2] == rows[:len(rules) * 2]   # DATA's and DARTS' rows
    assert all(r["child_valid_accuracy"] is None for r in partial
               if r["method"].startswith("gdas_"))
    assert partial_summary["not_finished"] == ["data_M4_seed1", "darts_seed1", "gdas_seed1"]
    assert not (tmp_path / "runs" / "data_M4_seed1").exists()
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
    assert row["pairs_per_node_normal"] == 2.0 and rows[0]["derivation"] == "node_sample"
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
    # finished_only: the table of what is finished; seed 1 is neither searched nor created.
    partial, partial_summary = _tiny(tmp_path, "seeds", methods=["data"], seeds=[0, 1],
                                     retrain=retrain, retrain_rule="darts", finished_only=True)
    assert partial == rule_rows and partial_summary["not_finished"] == ["data_M4_seed1"]
    assert not (tmp_path / "runs" / "data_M4_seed1").exists()
    with pytest.raises(ValueError, match="no run of this seeds_node_infer_rule table is "
                                         "finished .*data_M4_seed0, data_M4_seed1"):
        _tiny(tmp_path, "seeds", methods=["data"], seeds=[0, 1], retrain=retrain,
              retrain_rule="node_infer", finished_only=True)
    assert not (run / "retrain_node_infer").exists()
    # A row of an earlier version (the method's own child columns) is corrected in place.
    stale = {**json.loads((run / "ablation_row_darts.json").read_text()),
             "child_valid_accuracy": 0.5}
    (run / "ablation_row_darts.json").write_text(json.dumps(stale))
    assert _tiny(tmp_path, "seeds", methods=["data"], retrain=retrain,
                 retrain_rule="darts")[0] == rule_rows
    assert json.loads((run / "ablation_row_darts.json").read_text())["child_valid_accuracy"] \
        is None
    with pytest.raises(ValueError, match="darts's own genotype.json is already its darts-rule"):
        _tiny(tmp_path, "seeds", methods=["data", "darts"], retrain=retrain,
              retrain_rule="darts")
    assert row["child_valid_accuracy"] is None and row["gap"] is None   # not this cell's
    # A search older than the rule has no genotype file for it: one clear error before
    # anything runs (seed 1, listed after it, is not searched first), ...
    (run / "genotype_node_infer.json").unlink()
    with pytest.raises(ValueError, match=r"^--retrain_rule=node_infer: data_M4_seed0's search .* "
                                         r"has no genotype_node_infer.json; it predates"):
        _tiny(tmp_path, "seeds", methods=["data"], seeds=[1, 0], retrain=retrain,
              retrain_rule="node_infer")
    assert not (run / "retrain_node_infer").exists()
    assert not (tmp_path / "runs" / "data_M4_seed1").exists()
    # ... and finished_only leaves it out of the table by name.
    with pytest.raises(ValueError, match="no run of this seeds_node_infer_rule table is "
                                         r"finished .*\(finished_only\): data_M4_seed0\.$"):
        _tiny(tmp_path, "seeds", methods=["data"], retrain=retrain, retrain_rule="node_infer",
              finished_only=True)


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
    # One seed has no spread: the table leaves std empty rather than print 0.
    one_seed = summarize("num_samples", [r for r in rows if r["seed"] == 0])
    assert all(entry["runs"] == 1 and entry["std"] is None for entry in one_seed["by_M"])
    header, _, *table = _markdown(tmp_path / "one.md", "num_samples", one_seed).splitlines()[2:]
    column = [c.strip() for c in header.split("|")].index("std")
    assert [[c.strip() for c in line.split("|")][column] for line in table] == [""] * 3
    plot_ablation("num_samples", [r for r in rows if r["seed"] == 0], one_seed,
                  str(tmp_path / "one.png"))


def _markdown(path, ablation, summary):
    write_markdown(str(path), summary_rows(ablation, summary), ablation)
    return path.read_text()


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


def test_faithful_flagfile_gives_each_method_its_own_temperatures(tmp_path):
    """The faithful tables' flag file sets no temperature: GDAS' runs anneal
    10 -> 0.1 and DATA's 5 -> 1 (what each run resolved to is in its
    identity), while DARTS' committed runs, made when the command asked for
    5 -> 1, are still read back."""
    import shutil
    from trainers.ablation_runner import _resolved, ablation_specs
    config = SearchConfig(epochs=20)
    shape = SupernetShape(num_cells=3, init_channels=8, egs_scope="edge")
    specs = {spec.method: spec for spec in ablation_specs(
        "gap", base_config=config, shape=shape, methods=["data", "gdas"], seeds=[0])}
    temperatures = {method: (_resolved(spec, config, shape, 8)["config"]["initial_temperature"],
                             _resolved(spec, config, shape, 8)["config"]["final_temperature"])
                    for method, spec in specs.items()}
    assert temperatures == {"data": (5.0, 1.0), "gdas": (10.0, 0.1)}
    shutil.copytree(f"{ROOT}/docs/ablations/learn_preset/runs/darts_seed0",
                    tmp_path / "runs" / "darts_seed0")
    command = [sys.executable, "-m", "trainers.ablations",
               f"--flagfile={ROOT}/docs/ablations/faithful/ablation.flagfile.txt",
               "--ablation=seeds", "--methods=darts", "--seeds=0", f"--model_dir={tmp_path}"]
    proc = subprocess.run(command, cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "read back" in proc.stdout and "search darts" not in proc.stdout
