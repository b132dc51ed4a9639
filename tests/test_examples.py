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
