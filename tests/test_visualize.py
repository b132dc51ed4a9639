"""Seeing a search: cell drawings (text, DOT, PNG), trainers.visualize, and the
per-epoch TensorBoard images and genotype snapshots of a search run."""

import glob
import json
import os
import random
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from datanas.core.probability_image import probability_heatmap
from datanas.engine.run_identity import IDENTITY_FILE
from datanas.spaces import get_space
from datanas.spaces.drawing import (GraphvizNotFoundError, draw_genotype, genotype_dot,
                                    genotype_text, output_format)
from datanas.searching.epoch_pictures import EpochPictures
from datanas.spaces import get_space
from datanas.spaces.darts_cnn.genotype import Genotype, GenotypeError
from datanas.spaces.darts_cnn.supernet import SearchNetwork
from datanas.spaces.darts_rnn.genotype import DARTS_RNN, RecurrentGenotype
from datanas.spaces.darts_rnn.language_model import RNNSearchModel
from datanas.spaces.genotype_files import load_any_genotype
from datanas.training.cell_summaries import write_cell_summaries

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Node 2 of the normal cell has three ops, two of them on the edge from c_{k-2}.
MULTI_OP = Genotype(
    normal=[[("sep_conv_3x3", 0), ("skip_connect", 0), ("max_pool_3x3", 1)],
            [("dil_conv_5x5", 2), ("sep_conv_5x5", 2), ("avg_pool_3x3", 1)]],
    normal_concat=[2, 3],
    reduce=[[("max_pool_3x3", 0), ("avg_pool_3x3", 0)], [("skip_connect", 2)]],
    reduce_concat=[2, 3])
RECURRENT = RecurrentGenotype(recurrent=[[("tanh", 0)], [("relu", 1), ("sigmoid", 1)],
                                         [("identity", 0), ("relu", 2)]],
                              concat=[1, 2, 3])


def _needs_dot():
    if not shutil.which("dot"):
        pytest.skip("Graphviz 'dot' is not installed (setup.sh installs it)")


# -- drawing -------------------------------------------------------------------------------------

def test_text_names_every_op_and_input_of_every_node():
    text = genotype_text(MULTI_OP)
    lines = text.splitlines()
    normal = lines[lines.index(next(l for l in lines if l.startswith("normal cell"))):]
    assert ("  node 2 = sum of 3 (op, input) pairs: sep_conv_3x3(c_{k-2}) + "
            "skip_connect(c_{k-2}) + max_pool_3x3(c_{k-1})") in normal
    assert ("  node 3 = sum of 3 (op, input) pairs: dil_conv_5x5(node 2) + "
            "sep_conv_5x5(node 2) + avg_pool_3x3(c_{k-1})") in normal
    reduce_lines = lines[next(i for i, l in enumerate(lines) if l.startswith("reduce cell")):]
    assert "max_pool_3x3(c_{k-2}) + avg_pool_3x3(c_{k-2})" in reduce_lines[1]
    assert reduce_lines[2].endswith("skip_connect(node 2)")
    recurrent = genotype_text(RECURRENT)
    assert "s0 = tanh highway of (x_t, h_{t-1})" in recurrent
    assert "s2 = mean of 2 (activation, input) pairs: relu(s1), sigmoid(s1)" in recurrent
    assert "s3 = mean of 2 (activation, input) pairs: identity(s0), relu(s2)" in recurrent
    assert "output h_t = mean(s1, s2, s3)" in recurrent
    assert genotype_text(MULTI_OP, "reduce").startswith("reduce cell")


def test_dot_has_one_labelled_edge_per_pair_so_multi_op_edges_are_parallel():
    dot = genotype_dot(MULTI_OP)
    edges = [line.strip() for line in dot.splitlines() if "->" in line and "label=" in line]
    assert len(edges) == sum(len(node) for kind in ("normal", "reduce")
                             for node in MULTI_OP.cell(kind))
    parallel = [e for e in edges if e.startswith('"normal_0" -> "normal_2"')]
    assert sorted(e.split('label="')[1].split('"')[0] for e in parallel) == [
        "sep_conv_3x3", "skip_connect"]
    assert 'subgraph "cluster_normal"' in dot and 'subgraph "cluster_reduce"' in dot
    rnn = genotype_dot(RECURRENT)
    assert len([l for l in rnn.splitlines() if '"recurrent_1" -> "recurrent_3"' in l]) == 0
    assert len([l for l in rnn.splitlines() if '"recurrent_1" -> "recurrent_2"' in l]) == 2
    assert '"recurrent_x" -> "recurrent_0"' in rnn and '"recurrent_h" -> "recurrent_0"' in rnn


def test_png_svg_pdf_are_rendered_by_dot(tmp_path):
    _needs_dot()
    for genotype, name in ((MULTI_OP, "conv"), (RECURRENT, "rnn")):
        png = draw_genotype(genotype, tmp_path / f"{name}.png")
        assert open(png, "rb").read(8) == PNG_MAGIC
        image = tf.image.decode_png(open(png, "rb").read())
        assert image.shape[0] > 50 and image.shape[1] > 100
    draw_genotype(MULTI_OP, tmp_path / "c.svg")
    assert b"<svg" in (tmp_path / "c.svg").read_bytes()
    draw_genotype(DARTS_RNN, tmp_path / "c.pdf")
    assert (tmp_path / "c.pdf").read_bytes().startswith(b"%PDF")


def test_missing_dot_says_how_to_install_and_text_still_works(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))   # a PATH without Graphviz
    with pytest.raises(GraphvizNotFoundError, match="apt-get install graphviz"):
        draw_genotype(MULTI_OP, tmp_path / "cell.png")
    assert not (tmp_path / "cell.png").exists()
    draw_genotype(MULTI_OP, tmp_path / "cell.txt")
    assert "skip_connect(c_{k-2})" in (tmp_path / "cell.txt").read_text()
    draw_genotype(RECURRENT, tmp_path / "cell.dot")
    assert (tmp_path / "cell.dot").read_text().startswith("digraph")


def test_bad_output_extension_and_cell_kind_are_named():
    with pytest.raises(ValueError, match=r"'cell\.jpg' has extension '\.jpg'; allowed: "
                                         r"\.png, \.svg, \.pdf, \.txt, \.dot"):
        output_format("cell.jpg")
    with pytest.raises(ValueError, match="no extension"):
        output_format("cell")
    with pytest.raises(ValueError, match=r"\['normal'\] not in this genotype; allowed: recurrent"):
        genotype_text(RECURRENT, "normal")


def test_any_genotype_file_or_run_directory_loads(tmp_path):
    (tmp_path / "rnn.json").write_text(RECURRENT.to_json())
    assert load_any_genotype(tmp_path / "rnn.json") == RECURRENT
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(GenotypeError, match="holds no genotype.json"):
        load_any_genotype(run)
    (run / "genotype.json").write_text(MULTI_OP.to_json())
    assert load_any_genotype(run) == MULTI_OP
    with pytest.raises(GenotypeError, match="'.*missing.json' does not exist"):
        load_any_genotype(tmp_path / "missing.json")


def _visualize(*args, path=None):
    env = dict(ENV) if path is None else dict(ENV, PATH=path)
    return subprocess.run([sys.executable, "-m", "trainers.visualize", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_visualize_command_draws_a_run_directory_and_reports_missing_dot(tmp_path):
    _needs_dot()
    run = tmp_path / "run"
    run.mkdir()
    (run / "genotype.json").write_text(RECURRENT.to_json())
    proc = _visualize(f"--genotype={run}", f"--output={tmp_path / 'rnn.png'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "rnn.png").read_bytes()[:8] == PNG_MAGIC
    # Without Graphviz on PATH: one error line with the install hint, no traceback.
    proc = _visualize(f"--genotype={run}", f"--output={tmp_path / 'none.png'}",
                      path=str(tmp_path))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    errors = [l for l in proc.stderr.splitlines() if l.startswith("visualize: error:")]
    assert len(errors) == 1 and "apt-get install graphviz" in errors[0], proc.stderr[-2000:]


# -- the pictures of a search --------------------------------------------------------------------

def test_heatmap_pixels_follow_the_probabilities():
    image = probability_heatmap([[[0.0, 1.0]], [[1.0, 0.0], [0.5, 0.5]]], cell_height=2,
                                cell_width=3, separator=1, scale_width=4)
    assert image.dtype == np.uint8 and image.shape == (2 + 1 + 4, 2 * 3 + 1 + 4, 3)
    np.testing.assert_array_equal(image[0, 0], [68, 1, 84])      # 0 -> dark purple
    np.testing.assert_array_equal(image[0, 3], [253, 231, 37])   # 1 -> yellow
    np.testing.assert_array_equal(image[2, 0], [255, 255, 255])  # node separator
    np.testing.assert_array_equal(image[3, 0], [253, 231, 37])
    np.testing.assert_array_equal(image[5, 0], [33, 145, 140])   # 0.5
    assert get_space("darts_cnn").probability_rows("normal", 2) == [
        "node 2 <- c_{k-2}", "node 2 <- c_{k-1}", "node 3 <- c_{k-2}", "node 3 <- c_{k-1}",
        "node 3 <- node 2"]
    assert get_space("darts_rnn").probability_rows("recurrent", 2) == [
        "s1 <- s0", "s2 <- s0", "s2 <- s1"]


def _state(model):
    return [v.numpy().copy() for v in model.variables], random.getstate(), \
        np.random.get_state()[1].copy()


def _assert_same_state(before, after):
    for a, b in zip(before[0], after[0]):
        np.testing.assert_array_equal(a, b)
    assert before[1] == after[1]
    np.testing.assert_array_equal(before[2], after[2])


def test_pictures_change_no_training_state_or_random_stream(tmp_path, summary_tags):
    # (The pictures of a whole search run: tests/test_search.py::test_run_search_on_digits_...)
    model = SearchNetwork(10, init_channels=4, num_cells=3, num_nodes=2, num_samples=3, seed=0,
                          primitives=("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3"))
    model.build((None, 8, 8, 1))
    pictures = EpochPictures(get_space("darts_cnn"), model, str(tmp_path), rule="sample",
                             seed=0, verbose=0)
    before = _state(model)
    writer = tf.summary.create_file_writer(str(tmp_path / "tb"))
    with writer.as_default(step=7):
        scalars = pictures.end_epoch(6)
        pictures.write_summaries(6)
    writer.flush()
    _assert_same_state(before, _state(model))
    assert set(scalars) == {"expected_ops_per_edge/normal", "expected_ops_per_edge/reduce"}
    assert (tmp_path / "cell_epoch_007.json").exists()
    tags = summary_tags(tmp_path / "tb")
    for kind in ("normal", "reduce"):
        assert tags[f"arch_probabilities/{kind}"] == [(7, "images")]
        if shutil.which("dot"):
            assert tags[f"cell/{kind}"] == [(7, "images")]


def test_softmax_mixing_pictures_show_softmax_probabilities_and_no_op_count(tmp_path):
    # DARTS computes every op, so "expected ops per edge" has no meaning there.
    model = SearchNetwork(10, init_channels=4, num_cells=3, num_nodes=2, egs_scope="edge",
                          weighting="softmax", mode="dense", seed=0,
                          primitives=("none", "skip_connect", "sep_conv_3x3"))
    model.build((None, 8, 8, 1))
    pictures = EpochPictures(get_space("darts_cnn"), model, str(tmp_path), rule="darts", seed=0,
                             verbose=0)
    writer = tf.summary.create_file_writer(str(tmp_path / "tb"))
    with writer.as_default(step=1):
        assert pictures.end_epoch(0) == {}
        pictures.write_summaries(0)
    writer.flush()
    descriptions = {}
    for path in glob.glob(str(tmp_path / "tb" / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                descriptions[value.tag] = value.metadata.summary_description
    assert "softmax probability" in descriptions["arch_probabilities/normal"]
    assert "none, skip_connect, sep_conv_3x3" in descriptions["arch_probabilities/reduce"]
    snapshot = json.loads((tmp_path / "cell_epoch_001.json").read_text())
    assert snapshot["derivation"] == "darts"
    assert all(len(node) == 2 for node in snapshot["genotype"]["normal"][1:])


def test_recurrent_search_pictures(tmp_path, summary_tags):
    _needs_dot()
    model = RNNSearchModel(30, hidden_size=8, num_nodes=3, num_samples=2, state_rows=4, seed=1)
    for variable in model.architecture_variables:
        variable.assign(tf.zeros_like(variable))
    pictures = EpochPictures(get_space("darts_rnn"), model, str(tmp_path), rule="sample", seed=0,
                             verbose=0)
    before = _state(model)
    writer = tf.summary.create_file_writer(str(tmp_path / "tb"))
    with writer.as_default(step=1):
        scalars = pictures.end_epoch(0)
        pictures.write_summaries(0)
    writer.flush()
    _assert_same_state(before, _state(model))
    # Uniform logits over 4 activations + none per node: each input's expected
    # non-none count is 4 * (1 - (1 - p)^2) with p = 1 / (5 * inputs).
    expected = np.mean([4 * (1 - (1 - 1 / (5 * n)) ** 2) for n in (1, 2, 2, 3, 3, 3)])
    assert scalars["expected_ops_per_edge/recurrent"] == pytest.approx(expected, rel=1e-4)
    tags = summary_tags(tmp_path / "tb")
    assert tags["arch_probabilities/recurrent"] == [(1, "images")]
    assert tags["cell/recurrent"] == [(1, "images")]
    snapshot = json.loads((tmp_path / "cell_epoch_001.json").read_text())
    assert RecurrentGenotype.from_dict(snapshot["genotype"]).num_nodes == 3


def _text_summaries(log_dir):
    texts = {}
    for path in glob.glob(os.path.join(str(log_dir), "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "text":
                    texts[value.tag] = tf.make_ndarray(value.tensor).item().decode("utf-8")
    return texts


@pytest.mark.parametrize("genotype", [MULTI_OP, RECURRENT], ids=["conv", "recurrent"])
def test_training_runs_show_their_cell_once_in_tensorboard(genotype, tmp_path, summary_tags):
    class Trained:   # what the training programs pass: a model with a .genotype
        pass
    model = Trained()
    model.genotype = genotype
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default(step=1):
        written = write_cell_summaries(model, 0, verbose=0)
    with writer.as_default(step=2):
        assert write_cell_summaries(model, 1, verbose=0) == []   # only after the first epoch
    writer.flush()
    kinds = ["recurrent"] if isinstance(genotype, RecurrentGenotype) else ["normal", "reduce"]
    expected = ["genotype"] + ([f"cell/{kind}" for kind in kinds] if shutil.which("dot") else [])
    assert written == expected
    tags = summary_tags(tmp_path)
    assert tags["genotype"] == [(1, "text")]
    for name in expected[1:]:
        assert tags[name] == [(1, "images")]
    text = _text_summaries(tmp_path)["genotype"]
    for line in genotype_text(genotype).splitlines():
        assert line in text



_MAINS = """
import json, sys
from absl import flags
from trainers import visualize
for argv in json.loads(sys.argv[1]):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["visualize", *argv])
    try:
        visualize.main(["visualize"])
        print("RESULT " + json.dumps([0, ""]), flush=True)
    except SystemExit as stop:
        print("RESULT " + json.dumps([1, str(stop.code)]), flush=True)
"""


def _visualize_mains(*argvs):
    """(exit status, message) of trainers.visualize's main for each argument
    list, in order, in one subprocess: TensorFlow is imported once, and absl's
    flags stay out of the test process."""
    proc = subprocess.run([sys.executable, "-c", _MAINS, json.dumps([list(a) for a in argvs])],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line[len("RESULT "):]) for line in proc.stdout.splitlines()
               if line.startswith("RESULT ")]
    assert len(results) == len(argvs), proc.stdout[-3000:]
    return results


def _pdf_offsets_hold(data):
    """The trailer's startxref still points at the cross-reference section."""
    offset = int(data[data.rindex(b"startxref") + len(b"startxref"):].split()[0])
    return data[offset:offset + 4] == b"xref" or re.match(rb"\d+ 0 obj", data[offset:offset + 12])


def test_visualize_refuses_an_existing_output_and_never_overwrites_a_run_file(tmp_path):
    genotype = tmp_path / "g.json"
    genotype.write_text(RECURRENT.to_json())
    kept, replaced = tmp_path / "kept.txt", tmp_path / "replaced.txt"
    for path in (kept, replaced):
        path.write_text("my notes\n")
    # A run directory: the picture of its own cell may go into it; its files never change.
    run = tmp_path / "run"
    run.mkdir()
    (run / IDENTITY_FILE).write_text("{}")
    (run / "genotype.json").write_text(RECURRENT.to_json())
    flagfile = run / "flagfile.txt"
    flagfile.write_text("--epochs=3\n")
    other = tmp_path / "other_run"
    (other / "sub").mkdir(parents=True)
    (other / IDENTITY_FILE).write_text("{}")
    cases = {
        "exists": ([f"--genotype={genotype}", f"--output={kept}"], 1),
        "overwrite": ([f"--genotype={genotype}", f"--output={replaced}", "--overwrite"], 0),
        "run file": ([f"--genotype={run}", f"--output={flagfile}", "--overwrite"], 1),
        "other run": ([f"--genotype={genotype}", f"--output={other / 'sub' / 'cell.txt'}"], 1),
        "other run's genotype": ([f"--genotype={other}", f"--output={run / 'o.dot'}"], 1),
        "own run": ([f"--genotype={run}", f"--output={run / 'cell.dot'}"], 0),
        "own run again": ([f"--genotype={run}", f"--output={run / 'cell.dot'}"], 1),
        "own picture redrawn": ([f"--genotype={run}", f"--output={run / 'cell.dot'}",
                                 "--overwrite"], 0),
        "own text": ([f"--genotype={run / 'genotype.json'}", f"--output={run / 'cell.txt'}"], 0),
        "own text redrawn": ([f"--genotype={run}", f"--output={run / 'cell.txt'}",
                              "--overwrite"], 0),
        "a directory": ([f"--genotype={genotype}", f"--output={tmp_path}", "--overwrite"], 1),
    }
    images = shutil.which("dot") is not None   # the marks of rendered pictures
    if images:
        draw_genotype(RECURRENT, run / "foreign.png")   # a PNG this tool did not write
        for fmt in ("png", "svg", "pdf"):
            picture = run / f"cell.{fmt}"
            cases[f"own {fmt}"] = ([f"--genotype={run}", f"--output={picture}"], 0)
            cases[f"own {fmt} redrawn"] = ([f"--genotype={run}", f"--output={picture}",
                                            "--overwrite"], 0)
        cases["foreign png"] = ([f"--genotype={run}", f"--output={run / 'foreign.png'}",
                                 "--overwrite"], 1)
    results = dict(zip(cases, _visualize_mains(*(argv for argv, _ in cases.values()))))
    for name, (_, status) in cases.items():
        assert results[name][0] == status, (name, results[name])
        message = results[name][1]
        assert (message.startswith("visualize: error: --output=") and "\n" not in message) \
            if status else message == "", (name, message)
    assert "exists; pass --overwrite" in results["exists"][1]
    assert "is a directory" in results["a directory"][1]
    assert f"{flagfile} is a file of the run directory {run}" in results["run file"][1]
    assert f"inside the run directory {other}, not the run of" in results["other run"][1]
    assert f"inside the run directory {run}" in results["other run's genotype"][1]
    assert kept.read_text() == "my notes\n" and flagfile.read_text() == "--epochs=3\n"
    assert "s0 = tanh highway" in replaced.read_text()
    assert not (other / "sub" / "cell.txt").exists() and not (run / "o.dot").exists()
    assert (run / "cell.dot").read_text().startswith("digraph cells {")
    assert (run / "cell.txt").read_text() == genotype_text(RECURRENT)
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []
    if images:
        assert "foreign.png is a file of the run directory" in results["foreign png"][1]
        png = (run / "cell.png").read_bytes()
        assert tf.image.decode_png(png).shape[0] > 50
        assert b"tEXtSoftware\0drawn by datanas trainers.visualize" in png
        assert b"<svg" in (run / "cell.svg").read_bytes()
        pdf = (run / "cell.pdf").read_bytes()
        assert pdf.startswith(b"%PDF") and _pdf_offsets_hold(pdf)
