"""Every file under examples/ runs and does what its docstring says (check_fashion_mnist.py:
tests/test_result_card.py)."""

import os

import pytest

from datanas.engine.run_identity import IDENTITY_FILE


def _refused(example, argv, capsys):
    """The one error line of an example refusing `argv` (argparse: exit 2)."""
    with pytest.raises(SystemExit) as stop:
        example.main(argv)
    assert stop.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert len(errors) == 1, errors
    return errors[0]


@pytest.mark.usefixtures("global_seed")   # main() seeds the global generators
def test_feature_groups_learns_a_few_groups_and_reloads_identically(tmp_path, capsys,
                                                                    load_example):
    pytest.importorskip("sklearn")
    example = load_example("feature_groups")
    result = example.main(["--epochs=15", "--samples=4", f"--output_dir={tmp_path}"])
    # 10 classes (chance 0.1), 450 test digits: one standard error is ~0.02.
    assert result["test_accuracy"] > 0.5
    assert 1 <= len(result["kept_groups"]) < result["num_groups"]
    assert result["reload_identical"]
    assert os.path.isfile(tmp_path / "model.keras")
    out = capsys.readouterr().out
    assert f"kept {len(result['kept_groups'])} of 16 groups" in out
    assert out.count("#") == 4 * len(result["kept_groups"])


@pytest.mark.usefixtures("global_seed")   # main() seeds the global generators
def test_feature_groups_keeps_an_earlier_model_and_refuses_a_run_directory(tmp_path, capsys,
                                                                         load_example):
    pytest.importorskip("sklearn")
    example = load_example("feature_groups")
    first = example.main(["--epochs=1", f"--output_dir={tmp_path}"])
    earlier = (tmp_path / "model.keras").read_bytes()
    second = example.main(["--epochs=1", "--seed=1", f"--output_dir={tmp_path}"])
    assert second["path"] == first["path"] == str(tmp_path / "model.keras")
    assert (tmp_path / "model.attempt-1.keras").read_bytes() == earlier
    assert sorted(os.listdir(tmp_path)) == ["model.attempt-1.keras", "model.keras"]
    assert (f"{tmp_path / 'model.keras'} already existed: kept as "
            f"{tmp_path / 'model.attempt-1.keras'}.") in capsys.readouterr().out
    run = tmp_path / "run"
    run.mkdir()
    (run / "run_identity.json").write_text("{}")
    assert _refused(example, [f"--output_dir={run}"], capsys).endswith(
        f"--output_dir={run} is a run directory (run_identity.json), whose files only its run "
        "writes; choose another directory.")
    assert os.listdir(run) == ["run_identity.json"]


def test_own_images_writes_a_tree_searches_trains_and_serves_the_export(tmp_path, load_example):
    example = load_example("own_images")
    result = example.main([f"--output_dir={tmp_path}", "--per_class=10", "--image_size=12",
                           "--search_epochs=1", "--train_epochs=1", "--layers=3",
                           "--init_channels=4", "--batch_size=8"])
    # 30 real files (10 PNG, 20 JPEG), round(20%) = 2 of each class held out.
    assert len(list((tmp_path / "images").rglob("*.png"))) == 12
    assert len(list((tmp_path / "images").rglob("*.jpg"))) == 18
    assert result["class_names"] == ("bars", "discs", "squares")
    assert result["test_images"] == 6
    assert os.path.isfile(result["genotype"])
    assert os.path.isfile(os.path.join(result["export_dir"], "saved_model.pb"))
    # The export, served on the test images with the trainer's normalisation,
    # classifies them as the trainer's own test pass did (one epoch: same network).
    assert abs(result["served_test_accuracy"] - result["recorded_test_accuracy"]) \
        <= 1 / result["test_images"] + 1e-9


def test_feature_groups_refuses_bad_values_before_any_work(tmp_path, capsys, load_example):
    example = load_example("feature_groups")
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    for argv, expected in (
            (["--samples=0"], "--samples=0: must be an integer >= 1"),
            (["--epochs=-1"], "--epochs=-1: must be an integer >= 1"),
            (["--seed=-1"], "--seed=-1: must be an integer >= 0"),
            (["--patch=3"], "--patch=3: a group's side must divide the 8-pixel image side; "
                            "allowed: 1, 2, 4, 8."),
            (["--verbose=3"], "invalid choice: 3"),
            ([f"--output_dir={a_file}"], f"--output_dir={a_file} is an existing file; give a "
                                         "directory")):
        assert expected in _refused(example, argv, capsys), argv
    assert a_file.read_text() == ""


def test_own_images_refuses_bad_values_before_writing_anything(tmp_path, capsys, load_example):
    example = load_example("own_images")
    out = tmp_path / "out"
    for argv, expected in (
            (["--per_class=1"], "--per_class=1: must be an integer >= 2"),
            (["--image_size=4"], "--image_size=4: must be an integer >= 8"),
            (["--search_epochs=0"], "--search_epochs=0: must be an integer >= 1"),
            (["--train_epochs=0"], "--train_epochs=0: must be an integer >= 1"),
            (["--init_channels=1"], "--init_channels=1: must be an integer >= 2"),
            (["--batch_size=0"], "--batch_size=0: must be an integer >= 1"),
            ([f"--data_dir={tmp_path / 'missing'}"], "missing is not a directory")):
        assert expected in _refused(example, [f"--output_dir={out}", *argv], capsys), argv
    assert not out.exists()
    (tmp_path / "a_file").write_text("")
    assert "a_file is an existing file" in _refused(
        example, [f"--output_dir={tmp_path / 'a_file'}"], capsys)
    run = tmp_path / "run"
    run.mkdir()
    (run / IDENTITY_FILE).write_text("{}")
    assert f"lies inside the run directory {run}" in _refused(
        example, [f"--output_dir={run / 'own'}"], capsys)


def test_own_images_shows_a_trainers_refusal_in_one_line(tmp_path, capsys, load_example):
    # 2 images a class: 1 held out for testing, 3 left to search on, fewer than a batch.
    example = load_example("own_images")
    with pytest.raises(SystemExit) as stop:
        example.main([f"--output_dir={tmp_path}", "--per_class=2", "--image_size=8",
                      "--search_epochs=1", "--batch_size=32"])
    assert str(stop.value.code).startswith("own_images: error: trainers.search_cifar stopped: "
                                           "search_cifar: error: ")
    assert "\n" not in str(stop.value.code) and "batch_size" in str(stop.value.code)
