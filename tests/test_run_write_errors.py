"""A write that fails (a full disk) ends a run in one line, and the run resumes.

Claims: a checkpoint save that fails (TensorFlow's ResourceExhaustedError,
as its saver raises on a full disk), a metrics append or a JSON write that
fails (OSError errno 28), and the final model file or the export of a
training that cannot be written each end the run with one line (through the trainers'
``run_errors``) naming what could not be written, where, and the last
complete checkpoint; that checkpoint, the earlier records and the earlier
version of the file are intact, nothing half-written is left, and once
there is room again the same run resumes to the uninterrupted result.
"""

import builtins
import errno
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from datanas.engine import run_files
from datanas.engine.loop import run_loop
from datanas.engine.run_files import RunWriteFailed, write_json_atomic

import test_engine_loop  # noqa: E402  (tests/ is on the path: the shared test program)

FULL = "No space left on device"


def _disk_full():
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _one_line_exit(action, trainer="search_ptb"):
    """What a trainer's one line says after "could not write " when `action`
    fails inside run_errors."""
    from flags import core as flags_core  # pylint: disable=import-outside-toplevel
    with pytest.raises(SystemExit) as stop:
        with flags_core.run_errors(trainer):
            action()
    message = stop.value.code
    assert isinstance(message, str) and "\n" not in message, message
    assert message.startswith(f"{trainer}: error: could not write "), message
    return message[len(f"{trainer}: error: could not write "):]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of the engine tests' least-squares program."""
    program = test_engine_loop.LinearProgram()
    result = run_loop(program, str(tmp_path_factory.mktemp("reference")), verbose=0)
    return program.weights.numpy(), [r["train_loss"] for r in result.history]


def _resumes_to(directory, reference, from_step):
    program = test_engine_loop.LinearProgram()
    result = run_loop(program, str(directory), verbose=0)
    assert result.resumed_from_step == from_step
    np.testing.assert_array_equal(program.weights.numpy(), reference[0])
    assert [r["train_loss"] for r in result.history] == reference[1]


def _records(directory):
    return [json.loads(line)["epoch"]
            for line in (directory / "metrics.jsonl").read_text().splitlines()]


def _model_file_on_a_full_disk(monkeypatch, directory, train, trainer):
    """Runs `train` with keras.Model.save failing half-way on a full disk:
    the trainer's one line names model.keras and the intact checkpoint, and
    neither a model file, a result file nor a temporary file is left."""

    def full_save(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as handle:
            handle.write(b"PK\x03\x04 half a zip")
        raise _disk_full()

    monkeypatch.setattr(keras.Model, "save", full_save)
    message = _one_line_exit(train, trainer=trainer)
    checkpoint = tf.train.latest_checkpoint(str(directory / "checkpoints"))
    assert message == (f"{directory / 'model.keras'} ({FULL}); it is unchanged and the last "
                       f"complete checkpoint, {checkpoint}, is intact: free space and rerun "
                       "the same command to resume.")
    assert not [name for name in os.listdir(directory)
                if name in ("model.keras", "results.json") or name.startswith(".tmp-")]
    monkeypatch.undo()


def test_a_checkpoint_save_on_a_full_disk_is_one_line_and_the_run_resumes(
        tmp_path, monkeypatch, reference):
    directory = tmp_path / "run"
    real_save = tf.train.CheckpointManager.save

    def save(manager, checkpoint_number=None, **kwargs):
        if checkpoint_number == 8:   # the end of epoch 2
            prefix = os.path.join(str(manager.directory), f"ckpt-{checkpoint_number}")
            os.makedirs(prefix + "_temp")   # the saver's scratch folder, left behind
            raise tf.errors.ResourceExhaustedError(
                None, None, "{{function_node __wrapped__SaveV2_dtypes_11_device_/job:localhost/"
                f"replica:0/task:0/device:CPU:0}}}} {prefix}_temp/part-00000-of-00001.data-00000"
                f"-of-00001.tempstate1234; {FULL} [Op:SaveV2]")
        return real_save(manager, checkpoint_number=checkpoint_number, **kwargs)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", save)
    message = _one_line_exit(lambda: run_loop(test_engine_loop.LinearProgram(), str(directory),
                                              verbose=0))
    checkpoints = directory / "checkpoints"
    assert message == (f"checkpoint {checkpoints / 'ckpt-8'} ({FULL}); the last complete "
                       f"checkpoint, {checkpoints / 'ckpt-4'}, is intact: free space and rerun "
                       "the same command to resume.")
    assert tf.train.latest_checkpoint(str(checkpoints)).endswith("ckpt-4")
    assert not (checkpoints / "ckpt-8_temp").exists()
    assert _records(directory) == [1, 2]   # epoch 2's record: dropped on resume
    monkeypatch.setattr(tf.train.CheckpointManager, "save", real_save)
    _resumes_to(directory, reference, from_step=4)


def test_a_metrics_append_on_a_full_disk_is_cut_back_and_the_run_resumes(
        tmp_path, monkeypatch, reference):
    directory = tmp_path / "run"

    class HalfWritten:
        """A file that takes half of a write, then reports a full disk."""

        def __init__(self, handle):
            self.handle = handle

        def write(self, text):
            self.handle.write(text[:len(text) // 2])
            self.handle.flush()
            raise _disk_full()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    appends = []

    def full_open(path, mode="r", *args, **kwargs):
        handle = builtins.open(path, mode, *args, **kwargs)
        if mode != "a":
            return handle
        appends.append(path)
        return HalfWritten(handle) if len(appends) == 2 else handle   # epoch 2's record

    monkeypatch.setattr(run_files, "open", full_open, raising=False)
    before = {}

    class Watched(test_engine_loop.LinearProgram):
        def end_epoch(self, epoch):
            if epoch == 1:
                before["metrics"] = (directory / "metrics.jsonl").read_bytes()
            return super().end_epoch(epoch)

    message = _one_line_exit(lambda: run_loop(Watched(), str(directory), verbose=0))
    assert message == (f"{directory / 'metrics.jsonl'} ({FULL}); it is unchanged and the last "
                       f"complete checkpoint, {directory / 'checkpoints' / 'ckpt-4'}, is "
                       "intact: free space and rerun the same command to resume.")
    assert (directory / "metrics.jsonl").read_bytes() == before["metrics"]   # no torn line
    monkeypatch.undo()
    _resumes_to(directory, reference, from_step=4)


def test_a_json_write_on_a_full_disk_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    write_json_atomic(path, {"epoch": 1})

    def full_open(file, mode="r", *args, **kwargs):
        handle = builtins.open(file, mode, *args, **kwargs)
        if "w" in mode:
            handle.close()
            raise _disk_full()
        return handle

    monkeypatch.setattr(run_files, "open", full_open, raising=False)
    with pytest.raises(RunWriteFailed) as failed:
        write_json_atomic(path, {"epoch": 2})
    assert str(failed.value) == (f"could not write {path} ({FULL}); it is unchanged: free "
                                 "space and rerun the same command.")
    assert json.loads(path.read_text()) == {"epoch": 1}
    assert os.listdir(tmp_path) == ["results.json"]   # no temporary file left


def test_the_final_model_file_on_a_full_disk_is_one_line_and_the_training_finishes_on_rerun(
        ptb_dir, tmp_path, monkeypatch, global_seed):
    """A language-model training whose model.keras cannot be written (the
    last writes of a run): one line, no result file, no half-written model;
    the rerun resumes its last checkpoint and writes both."""
    # pylint: disable=import-outside-toplevel
    import keras
    from data_tf import load_text_corpus, make_lm_train_inputs
    from datanas.spaces.darts_rnn.genotype import DARTS_RNN
    from datanas.spaces.darts_rnn.language_model import RNNLanguageModel
    from datanas.training.lm_trainer import LMTrainConfig, run_lm_training

    corpus = load_text_corpus("ptb", ptb_dir)
    inputs = make_lm_train_inputs(corpus, batch_size=8, eval_batch_size=64, test_batch_size=64,
                                  bptt=8, train_tokens=1200, seed=0)
    directory = tmp_path / "train"

    def train():
        global_seed(0)
        model = RNNLanguageModel(DARTS_RNN, corpus.vocab_size, hidden_size=8, state_rows=64,
                                 seed=0)
        return run_lm_training(model, inputs, LMTrainConfig(epochs=1, bptt=8), str(directory),
                               verbose=0)

    _model_file_on_a_full_disk(monkeypatch, directory, train, "train_ptb")
    results = train()
    assert json.loads((directory / "results.json").read_text()) == json.loads(
        run_files.json_text(results))
    assert keras.saving.load_model(directory / "model.keras") is not None


def _tiny_image_training(directory, export_dir=None):
    """A callable that trains (or resumes) a 3-cell C=4 network of one-node
    cells for one epoch of two steps on 8x8 random images into `directory`."""
    # pylint: disable=import-outside-toplevel
    from datanas.spaces.darts_cnn.genotype import Genotype
    from datanas.spaces.darts_cnn.networks import NetworkCIFAR
    from datanas.training.trainer import TrainConfig, run_training

    cell = Genotype(normal=[[("sep_conv_3x3", 0), ("skip_connect", 1)]], normal_concat=[2],
                    reduce=[[("max_pool_3x3", 0), ("skip_connect", 1)]], reduce_concat=[2])
    rng = np.random.default_rng(0)
    images = rng.normal(size=(16, 8, 8, 3)).astype(np.float32)
    labels = rng.integers(0, 10, size=16).astype(np.int32)

    def data(epoch, context=None):   # pylint: disable=unused-argument
        return tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)

    def train():
        model = NetworkCIFAR(cell, num_classes=10, init_channels=4, layers=3,
                             auxiliary=False)
        model.build((None, 8, 8, 3))
        return run_training(model, data, {}, TrainConfig(epochs=1), str(directory),
                            steps_per_epoch=2, image_shape=(8, 8, 3), verbose=0,
                            export_dir=None if export_dir is None else str(export_dir))
    return train


def test_a_trained_networks_model_file_on_a_full_disk_is_one_line_and_the_rerun_finishes(
        tmp_path, monkeypatch, global_seed):
    """train_cifar/imagenet/voc's model.keras, like the language model's: one
    line naming it and the intact checkpoint, no result file, no half file."""
    import keras  # pylint: disable=import-outside-toplevel

    directory = tmp_path / "train"
    global_seed(0)
    train = _tiny_image_training(directory)

    _model_file_on_a_full_disk(monkeypatch, directory, train, "train_cifar")
    train()
    assert (directory / "results.json").exists()
    assert keras.saving.load_model(directory / "model.keras") is not None


def test_an_export_on_a_full_disk_leaves_the_run_unfinished_and_no_half_export(
        tmp_path, monkeypatch, global_seed):
    """The export is written before results.json (which marks the run
    finished), through a temporary directory: a failed export is one line,
    leaves neither a result file nor part of an export, and the rerun
    resumes and exports.  A result file that cannot be written after the
    export takes the export back, so the rerun can write it again."""
    import keras  # pylint: disable=import-outside-toplevel

    directory, export = tmp_path / "train", tmp_path / "train" / "saved_model"
    global_seed(0)
    train = _tiny_image_training(directory, export_dir=export)
    archive_class = type(keras.export.ExportArchive())   # the backend's class
    real_write_out = archive_class.write_out

    def full_write_out(self, filepath, *args, **kwargs):
        os.makedirs(os.path.join(filepath, "variables"), exist_ok=True)
        with open(os.path.join(filepath, "saved_model.pb"), "wb") as handle:
            handle.write(b"half a graph")
        raise tf.errors.ResourceExhaustedError(None, None, f"{filepath}/variables/variables."
                                               "data-00000-of-00001; No space left on device")

    monkeypatch.setattr(archive_class, "write_out", full_write_out)
    message = _one_line_exit(train, trainer="train_cifar")
    checkpoint = tf.train.latest_checkpoint(str(directory / "checkpoints"))
    assert message == (f"{export} ({FULL}); it is unchanged and the last complete checkpoint, "
                       f"{checkpoint}, is intact: free space and rerun the same command to "
                       "resume.")
    left = sorted(os.listdir(directory))
    assert "results.json" not in left and "saved_model" not in left, left
    assert not [name for name in left if name.startswith(".tmp-")], left

    # The export is written, then results.json cannot be: the export goes again.
    monkeypatch.setattr(archive_class, "write_out", real_write_out)
    real_write_json = run_files.write_json_atomic

    def full_results(path, obj):
        if os.path.basename(str(path)) == "results.json":
            assert (export / "saved_model.pb").exists()   # the export came first
            raise run_files.write_failed(path, _disk_full())
        return real_write_json(path, obj)

    from datanas.training import export as export_module   # pylint: disable=import-outside-toplevel
    monkeypatch.setattr(export_module, "write_json_atomic", full_results)
    assert _one_line_exit(train, trainer="train_cifar").startswith(
        f"{directory / 'results.json'} ({FULL})")
    assert not export.exists() and not (directory / "results.json").exists()
    monkeypatch.undo()
    results = train()
    assert results["export_dir"] == str(export)
    assert json.loads((directory / "results.json").read_text())["export_dir"] == str(export)
    assert "serve" in dir(tf.saved_model.load(str(export)))
    assert not [name for name in os.listdir(directory) if name.startswith(".tmp-")]
