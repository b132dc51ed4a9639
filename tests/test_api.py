"""The Python API (datanas.search / train / load_genotype / save_genotype):
own data in, a saved .keras model out, run directories that resume."""

import os
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import datanas
from data_tf.image_datasets import load_image_dataset
from datanas.engine.run_identity import RunRefused

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(epochs=1, layers=3, init_channels=4, nodes=2, batch_size=32, train_size=320,
            verbose=0)


@pytest.fixture(scope="module")
def digits():
    data = load_image_dataset("digits")
    return data.train_images, data.train_labels


def test_the_readme_block_searches_trains_saves_and_reloads_in_a_fresh_interpreter(
        tmp_path, readme_python_blocks):
    """The README's Python block, as written, in a fresh interpreter: a search
    on numpy arrays, training, a .keras file, and a reloaded model that
    predicts what the trained one does."""
    block, = [b for b in readme_python_blocks if "datanas.search(" in b]
    check = textwrap.dedent("""
        import numpy as np
        a = model.predict(x[:64], verbose=0)
        b = reloaded.predict(x[:64], verbose=0)
        # The same weights and graph: equal up to float rounding of the kernels.
        assert a.shape == (64, 10) and np.allclose(a, b, rtol=1e-5, atol=1e-5), np.abs(a - b).max()
        assert np.array_equal(a.argmax(-1), b.argmax(-1))
        print("PAIRS", max(len(n) for n in result.genotype.normal), len(result.history))
        """)
    proc = subprocess.run([sys.executable, "-c", block + check], cwd=tmp_path,
                          capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "digits_model.keras").exists()
    widest, epochs = map(int, re.search(r"PAIRS (\d+) (\d+)", proc.stdout).groups())
    assert epochs == 2 and 1 <= widest <= 4    # node_sample keeps at most M=4 pairs a node


def test_the_api_page_block_runs_as_written(tmp_path, api_page_python_blocks):
    """docs/api.md's example, unchanged, in a fresh interpreter: it prints a
    genotype and four predicted digit classes."""
    block, = api_page_python_blocks
    proc = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True,
                          text=True, timeout=900,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"normal=.*\[[0-9] [0-9] [0-9] [0-9]\]\s*$", proc.stdout, re.DOTALL), \
        proc.stdout[-2000:]


class Recorder(keras.callbacks.Callback):
    def __init__(self, stop_after=None):
        super().__init__()
        self.epochs, self.logs, self.stop_after = [], [], stop_after

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch)
        self.logs.append(dict(logs))
        if self.stop_after is not None and epoch + 1 >= self.stop_after:
            raise KeyboardInterrupt("stopped by the test")


def test_a_tf_data_search_tells_its_callbacks_every_epoch(digits, global_seed):
    x, y = digits
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(50)
    recorder = Recorder()
    result = datanas.search(batches, callbacks=[recorder], **{**TINY, "epochs": 2})
    assert recorder.epochs == [0, 1]
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert recorder.logs[-1]["valid_accuracy"] == result.history[-1]["valid_accuracy"]
    assert set(result.genotypes) >= {"node_sample", "node_infer", "darts"}
    assert result.genotype == result.genotypes["node_sample"]
    assert result.probabilities["scope"] == "edge"


def test_a_model_dir_resumes_reads_back_and_refuses_other_settings(digits, tmp_path,
                                                                  global_seed):
    x, y = digits
    run = str(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        datanas.search((x, y), model_dir=run, callbacks=[Recorder(stop_after=1)],
                       **{**TINY, "epochs": 2})
    resumed = Recorder()
    result = datanas.search((x, y), model_dir=run, callbacks=[resumed], **{**TINY, "epochs": 2})
    assert resumed.epochs == [1]                 # the first epoch was not run again
    assert [r["epoch"] for r in result.history] == [1, 2]
    # The files an extension would keep under attempt names are the files
    # the search wrote (one list, shared with the CLI's --extend_run).
    from datanas.searching.run import search_result_files
    declared = set(search_result_files(["darts_cnn"]))
    assert declared <= set(os.listdir(run))
    assert not {name for name in os.listdir(run) if name.startswith("genotype")} - declared
    again = Recorder()
    read_back = datanas.search((x, y), model_dir=run, callbacks=[again], **{**TINY, "epochs": 2})
    assert read_back.genotype == result.genotype and again.epochs == [0, 1]
    with pytest.raises(RunRefused, match="num_samples"):
        datanas.search((x, y), model_dir=run, num_samples=2, **{**TINY, "epochs": 2})


def test_validation_data_is_the_validation_split(digits, global_seed):
    import json
    x, y = digits
    result = datanas.search((x[:320], y[:320]), validation_data=(x[320:400], y[320:400]),
                            **{**TINY, "train_size": None})
    with open(os.path.join(result.model_dir, "run_identity.json")) as handle:
        sizes = json.load(handle)["data"]["sizes"]
    assert sizes == {"train": 320, "arch": 0, "validation": 80}
    # 80 validation images: an accuracy is a whole number of them.
    correct = result.history[0]["valid_accuracy"] * 80
    assert correct == pytest.approx(round(correct), abs=1e-6)


def test_bad_input_is_one_line(digits):
    x, y = digits
    with pytest.raises(TypeError, match=r"search\(\) got unknown setting\(s\) learning_rat; "):
        datanas.search((x, y), learning_rat=0.1)
    with pytest.raises(ValueError, match="train_data must be"):
        datanas.search(42)
    with pytest.raises(ValueError, match="method must be one of"):
        datanas.search((x, y), method="enas", **TINY)


def test_a_refused_setting_leaves_no_run_behind(digits, tmp_path, global_seed):
    """Settings the supernet refuses fail before the first byte is written:
    the corrected call then runs in the same model_dir."""
    x, y = digits
    with pytest.raises(ValueError, match="foo_conv"):
        datanas.search((x, y), model_dir=str(tmp_path / "run"),
                       primitives=("none", "foo_conv"), **TINY)
    assert not (tmp_path / "run").exists() or not os.listdir(tmp_path / "run")


def test_genotypes_save_and_load(tmp_path):
    genotype = datanas.load_genotype(os.path.join(ROOT, "docs", "quickstart", "genotype.json"))
    path = str(tmp_path / "cell.json")
    datanas.save_genotype(genotype, path)
    assert datanas.load_genotype(path) == genotype
    with pytest.raises(FileExistsError, match="does not replace"):
        datanas.save_genotype(genotype, path)


def test_docs_api_page_lists_every_public_name_with_its_signature():
    import inspect
    page = open(os.path.join(ROOT, "docs", "api.md")).read()
    for name in datanas.__all__:
        obj = getattr(datanas, name)
        if callable(obj) and not isinstance(obj, type):
            signature = f"{name}{inspect.signature(obj)}"
            assert signature in page.replace("\n    ", " ").replace("\n", " "), signature
        else:
            assert f"`{name}`" in page, name
