"""The result card chooses on validation only and reads every figure from run files;
the shipped accuracy check serves an export the way the trainer evaluates."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from datanas.analysis.result_card import Candidate, rank_candidates, result_card

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
GENOTYPE = {"normal": [[["sep_conv_3x3", 0], ["skip_connect", 1]]] * 4,
            "normal_concat": [2, 3, 4, 5],
            "reduce": [[["max_pool_3x3", 0], ["sep_conv_5x5", 1]]] * 4,
            "reduce_concat": [2, 3, 4, 5]}


def _run_dir(path, records, **files):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(record) + "\n" for record in records)
    for name, content in files.items():
        with open(os.path.join(path, f"{name}.json"), "w") as f:
            json.dump(content, f)
    return str(path)


def _candidate(tmp_path, name, valid, test, search_seconds=100.0, genotype=None):
    search = _run_dir(tmp_path / name / "search", [{"epoch": 1, "epoch_seconds": search_seconds}])
    proxy = _run_dir(tmp_path / name / "proxy",
                     [{"epoch": e, "epoch_seconds": 10.0, "valid_accuracy": valid - 0.1 / e,
                       "test_accuracy": test} for e in (1, 2)],
                     train_config={"metadata": {"genotype": genotype or GENOTYPE}})
    return Candidate(method="data_M4", seed=0, name=name, search_dir=search, proxy_dir=proxy)


def test_the_choice_follows_validation_not_test(tmp_path):
    # b has the better test accuracy, a the better validation accuracy: a is chosen.
    a = _candidate(tmp_path, "a", valid=0.90, test=0.80)
    b = _candidate(tmp_path, "b", valid=0.85, test=0.95)
    ranked = rank_candidates([b, a])
    assert [row["name"] for row in ranked] == ["a", "b"]
    assert [row["selected"] for row in ranked] == [True, False]
    assert ranked[0]["proxy_valid_accuracy"] == pytest.approx(0.85)   # the last epoch's
    assert all("test" not in key for row in ranked for key in row)
    assert ranked[0]["search_hours"] == pytest.approx(100 / 3600)


def test_a_proxy_without_validation_is_refused(tmp_path):
    bad = _candidate(tmp_path, "a", valid=0.9, test=0.9)
    _run_dir(bad.proxy_dir, [{"epoch": 1, "epoch_seconds": 1.0, "test_accuracy": 0.9}])
    with pytest.raises(ValueError, match="no validation accuracy"):
        rank_candidates([bad])


def test_card_reads_the_final_run_and_refuses_an_unfinished_one(tmp_path):
    ranked = rank_candidates([_candidate(tmp_path, "a", 0.9, 0.8, search_seconds=1800.0)])
    config = {"train": {"epochs": 2}, "model": {"layers": 8, "init_channels": 24,
                                                "stem_stride": 2, "auxiliary": True},
              "metadata": {"parameters": 12345, "multiply_adds": 678}}
    final = _run_dir(tmp_path / "final", [{"epoch": 1, "epoch_seconds": 1800.0},
                                          {"epoch": 2, "epoch_seconds": 1800.0,
                                           "test_accuracy": 0.9412}],
                     train_config=config,
                     results={"final": {"epoch": 2, "test_accuracy": 0.9412}})
    card = result_card(final, ranked, "docs/g.json", dataset="fashion_mnist")
    assert card["test_accuracy"] == 0.9412 and card["parameters"] == 12345
    assert card["retrain_hours"] == pytest.approx(1.0)
    assert card["search_hours"] == pytest.approx((1800 + 20) / 3600, abs=1e-3)
    assert card["network"]["stem_stride"] == 2 and card["selected"] == "a"
    config["train"]["epochs"] = 3
    _run_dir(final, [{"epoch": 1, "epoch_seconds": 1.0}], train_config=config)
    with pytest.raises(ValueError, match="stopped at epoch 2 of 3"):
        result_card(final, ranked, "docs/g.json", dataset="fashion_mnist")


def _final_run(path, test_accuracy, seconds, genotype=None, epochs=2):
    config = {"train": {"epochs": epochs}, "model": {"layers": 8},
              "metadata": {"parameters": 1, "multiply_adds": 1, "genotype": genotype or GENOTYPE}}
    records = [{"epoch": e, "epoch_seconds": seconds / epochs} for e in range(1, epochs + 1)]
    records[-1]["test_accuracy"] = test_accuracy
    return _run_dir(path, records, train_config=config,
                    results={"final": {"epoch": epochs, "test_accuracy": test_accuracy}})


def test_an_earlier_attempt_is_listed_and_counted_not_hidden(tmp_path):
    ranked = rank_candidates([_candidate(tmp_path, "a", 0.9, 0.8, search_seconds=3600.0)])
    first = _final_run(tmp_path / "first", 0.93, seconds=1800.0)
    second = _final_run(tmp_path / "second", 0.94, seconds=7200.0)
    card = result_card(second, ranked, "g.json", dataset="fashion_mnist",
                       earlier_attempts=[{"name": "attempt1", "run_dir": first}])
    assert card["test_accuracy"] == 0.94 and card["retrain_hours"] == pytest.approx(2.0)
    assert card["earlier_attempts"] == [{"name": "attempt1", "test_accuracy": 0.93,
                                         "retrain_hours": 0.5, "training": {"epochs": 2}}]
    assert card["total_hours"] == pytest.approx(card["search_hours"] + 2.0 + 0.5, abs=1e-3)
    assert result_card(second, ranked, "g.json", dataset="x")["earlier_attempts"] == []
    other = dict(GENOTYPE, normal=[[["avg_pool_3x3", 0], ["skip_connect", 1]]] * 4)
    stranger = _final_run(tmp_path / "other", 0.95, seconds=60.0, genotype=other)
    with pytest.raises(ValueError, match="trained another cell"):
        result_card(second, ranked, "g.json", dataset="fashion_mnist",
                    earlier_attempts=[{"name": "x", "run_dir": stranger}])


def test_the_trainer_writes_the_chosen_genotype_then_refuses_another(tmp_path):
    other = dict(GENOTYPE, normal=[[["avg_pool_3x3", 0], ["skip_connect", 1]]] * 4)
    candidates = [_candidate(tmp_path, "a", 0.80, 0.9, genotype=other),
                  _candidate(tmp_path, "b", 0.88, 0.7)]
    spec = tmp_path / "candidates.json"
    spec.write_text(json.dumps([vars(c) for c in candidates]))
    out = tmp_path / "chosen.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, "-m", "trainers.result_card", f"--candidates={spec}",
               f"--genotype_out={out}", f"--candidates_csv={tmp_path / 'c.csv'}"]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(out.read_text()) == GENOTYPE
    assert (tmp_path / "c.csv").read_text().splitlines()[0].startswith("method,seed,")
    out.write_text(json.dumps(other))
    proc = subprocess.run(command + [f"--final_dir={tmp_path}", "--overwrite"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "is not the chosen cell (b)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_trainer_replaces_no_output_and_writes_into_no_run_directory(tmp_path):
    """An existing --genotype_out, --candidates_csv or --output is refused in
    one line unless --overwrite; a path in a run directory always is; a
    refused command writes nothing (checked before anything is read)."""
    spec = tmp_path / "candidates.json"
    spec.write_text(json.dumps([vars(_candidate(tmp_path, "a", 0.8, 0.9))]))
    run = tmp_path / "run"
    run.mkdir()
    (run / "run_identity.json").write_text("{}")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")

    def result_card_(*args):
        proc = subprocess.run([sys.executable, "-m", "trainers.result_card",
                               f"--candidates={spec}", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
        errors = [l for l in proc.stderr.splitlines() if l.startswith("result_card: error:")]
        return proc.returncode, errors

    out, table, card = tmp_path / "chosen.json", tmp_path / "c.csv", tmp_path / "card.json"
    for path in (out, table, card):
        path.write_text("earlier")
    step_one = [f"--genotype_out={out}", f"--candidates_csv={tmp_path / 'new.csv'}"]
    assert result_card_(*step_one) == (1, [
        f"result_card: error: --genotype_out={out} exists; pass --overwrite to replace it, "
        "or choose a new path."])
    assert result_card_(f"--genotype_out={tmp_path / 'new.json'}",
                        f"--candidates_csv={table}")[1] == [
        f"result_card: error: --candidates_csv={table} exists; pass --overwrite to replace "
        "it, or choose a new path."]
    # Step 2 reads --genotype_out and writes --output.
    assert result_card_(f"--genotype_out={out}", f"--final_dir={tmp_path}",
                        f"--output={card}")[1] == [
        f"result_card: error: --output={card} exists; pass --overwrite to replace it, or "
        "choose a new path."]
    for flag, path in (("--genotype_out", run / "chosen.json"),
                       ("--candidates_csv", run / "tables" / "c.csv")):
        args = {"--genotype_out": f"--genotype_out={tmp_path / 'new.json'}", flag: f"{flag}={path}"}
        assert result_card_(*args.values(), "--overwrite")[1] == [
            f"result_card: error: {flag}={path} lies in the run directory {run}, whose files "
            "only its run writes (--overwrite included); write it outside run directories."]
    assert all(path.read_text() == "earlier" for path in (out, table, card))
    assert sorted(os.listdir(run)) == ["run_identity.json"]
    assert not (tmp_path / "new.json").exists() and not (tmp_path / "new.csv").exists()
    assert result_card_(*step_one, "--overwrite") == (0, [])
    assert json.loads(out.read_text()) == GENOTYPE
    assert (tmp_path / "new.csv").read_text().startswith("method,seed,")


def test_no_candidates_is_one_line_not_a_traceback(tmp_path):
    with pytest.raises(ValueError, match="no candidates"):
        rank_candidates([])
    twice = _candidate(tmp_path, "a", 0.9, 0.8)
    with pytest.raises(ValueError, match="unique .*repeated: a"):
        rank_candidates([twice, twice])
    command = [sys.executable, "-m", "trainers.result_card",
               f"--genotype_out={tmp_path / 'chosen.json'}"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    for name, content in (("empty", "[]"), ("object", '{"name": "a"}')):
        spec = tmp_path / f"{name}.json"
        spec.write_text(content)
        proc = subprocess.run(command + [f"--candidates={spec}"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        errors = [l for l in proc.stderr.splitlines() if l.startswith("result_card: error:")]
        assert errors == [f"result_card: error: --candidates={spec}: expected a non-empty JSON "
                          "list of candidates (method, seed, name, search_dir, proxy_dir), got "
                          + ("an empty list." if name == "empty" else "a dict.")], proc.stderr
    assert not (tmp_path / "chosen.json").exists()


def test_the_shipped_card_is_what_its_shipped_run_files_say(monkeypatch):
    """docs/results/fashion_mnist.json is recomputed from the run files shipped
    beside it (candidates' searches and proxies, the final retraining, every
    earlier attempt): no figure typed in or left stale, the cell chosen on
    validation, its genotype file the chosen proxy's cell, under 1M parameters."""
    from datanas.analysis.result_card import proxied_genotype

    monkeypatch.chdir(ROOT)   # the card's paths are relative to the repository
    with open("docs/results/fashion_mnist.json") as f:
        card = json.load(f)
    with open("docs/results/fashion_mnist_candidates.json") as f:
        candidates = [Candidate(**entry) for entry in json.load(f)]
    ranked = rank_candidates(candidates)
    earlier = [{"name": a["name"], "run_dir": f"docs/results/fashion_mnist_{a['name']}"}
               for a in card["earlier_attempts"]]
    recomputed = result_card("docs/results/fashion_mnist_final", ranked, card["genotype"],
                             dataset="fashion_mnist", command=card["command"],
                             published=card["published_baselines"], earlier_attempts=earlier)
    assert recomputed == card
    chosen = next(c for c in candidates if c.name == card["selected"])
    with open(card["genotype"]) as f:
        assert json.load(f) == proxied_genotype(chosen)
    assert card["parameters"] < 1_000_000


@pytest.mark.skipif(not os.path.isdir(FASHION_DIR), reason="Debian dataset-fashion-mnist not installed")
def test_the_accuracy_check_serves_as_the_trainer_evaluates(tmp_path, capsys, load_example,
                                                             global_seed):
    from data_tf.image_datasets import load_image_dataset
    from data_tf.image_pipelines import make_image_pipeline
    from datanas.spaces.darts_cnn.genotype import Genotype
    from datanas.spaces.darts_cnn.networks import NetworkCIFAR
    from datanas.training.export import export_saved_model

    global_seed(0)
    model = NetworkCIFAR(Genotype.from_dict(GENOTYPE), num_classes=10, init_channels=4,
                         layers=3, auxiliary=False, stem_stride=2)
    model.build((None, 28, 28, 1))
    export_saved_model(model, str(tmp_path / "export"), (28, 28, 1))
    # The trainer's own evaluation pipeline gives the accuracy to record.
    data = load_image_dataset("fashion_mnist")
    correct = 0
    for images, labels in make_image_pipeline(data.test_images, data.test_labels, batch_size=1000,
                                              training=False, mean=data.mean, std=data.std):
        correct += int(np.sum(np.argmax(model(images).numpy(), -1) == labels.numpy()))
    recorded = correct / len(data.test_labels)
    example = load_example("check_fashion_mnist")
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"test_accuracy": recorded}))
    assert example.main([f"--export_dir={tmp_path / 'export'}", f"--result={card}"]) == 0
    assert "OK" in capsys.readouterr().out
    card.write_text(json.dumps({"test_accuracy": recorded + 0.01}))
    assert example.main([f"--export_dir={tmp_path / 'export'}", f"--result={card}"]) == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_the_accuracy_check_names_an_exports_other_input_shape(tmp_path, capsys, load_example,
                                                                global_seed):
    """An export of 8x8 colour images: one line naming both shapes, not the
    tensor of a refused call (the data is not even read)."""
    import keras
    from datanas.training.export import export_saved_model

    global_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(10)])
    export_saved_model(model, str(tmp_path / "export"), (8, 8, 3))
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"test_accuracy": 0.9}))
    example = load_example("check_fashion_mnist")
    argv = [f"--export_dir={tmp_path / 'export'}", f"--result={card}",
            f"--data_dir={tmp_path / 'no_data'}"]
    for extra, expected in (
            ([], f"--export_dir={tmp_path / 'export'} serves images of shape (8, 8, 3), but "
                 "Fashion-MNIST's are (28, 28, 1)"),
            (["--tolerance=-0.1"], "--tolerance=-0.1: must be a number >= 0")):
        with pytest.raises(SystemExit) as stop:
            example.main(argv + extra)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and len(err.splitlines()) <= 4, err
        errors = [line for line in err.splitlines() if ": error: " in line]
        assert len(errors) == 1 and expected in errors[0], err
