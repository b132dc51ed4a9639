"""Every file under examples/ runs and does what its docstring says (check_fashion_mnist.py:
tests/test_result_card.py)."""

import os

import pytest


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
