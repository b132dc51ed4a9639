"""SavedModel export of a trained network (inference: inputs -> logits), and
the order in which a training writes its final files."""

import os
import shutil
import tempfile

import keras
import tensorflow as tf

from datanas.engine.run_files import (RunWriteFailed, last_checkpoint, read_json, write_errors,
                                      write_failed, write_file_atomic, write_json_atomic)
from datanas.engine.run_identity import (EXPORT_RECORD, IDENTITY_FILE, export_record,
                                         keep_as_attempt)

__all__ = ["export_saved_model", "write_final_files", "SERVING_ENDPOINT", "TRAIN_RESULT_FILE",
           "TRAIN_RESULT_FILES", "MODEL_FILE"]

#: The file whose presence marks a training run as finished, and every file
#: write_final_files writes (an extended run keeps them under attempt names).
TRAIN_RESULT_FILE = "results.json"
MODEL_FILE = "model.keras"
TRAIN_RESULT_FILES = (TRAIN_RESULT_FILE, MODEL_FILE)

SERVING_ENDPOINT = "serve"


def export_saved_model(model, export_dir, input_shape, dtype=tf.float32, input_name="images",
                       *, model_dir=None):
    """Writes a TF SavedModel with one endpoint ``serve(inputs) -> logits``.

    `input_shape` excludes the batch axis (None for a variable length).  For
    image networks the auxiliary head is not part of the endpoint
    (``model(images)`` returns the main logits only); a language model serves
    ``tokens [batch, time] -> logits [batch, time, vocab]`` from a zero state.
    Reload with ``tf.saved_model.load(export_dir).serve`` or
    ``keras.layers.TFSMLayer(export_dir, call_endpoint="serve")``; the
    endpoint is also the ``serving_default`` signature for TF Serving.

    The export is written into a temporary directory beside `export_dir`
    (``.tmp-<name>-<random>``) and renamed to it once complete: a kill or a
    failed write never leaves half an export.  An export is never replaced:
    a directory that already holds files is first kept under
    ``<export_dir>.attempt-<n>`` (the trainers refuse such a directory
    before a run starts, unless it is this run's own export: an extended
    run's earlier one, or one written just before a kill that came before
    the result file; this also covers one that appeared since).  The export
    holds ``datanas_export.json`` (EXPORT_RECORD): digests of the directory
    and identity of the run in `model_dir` that wrote it, when that run has
    an identity (no paths or settings travel with the export).

    Raises:
      RunWriteFailed: the export could not be written (a full disk): one line
        naming `export_dir` and the last complete checkpoint of `model_dir`
        (the run whose model this is; default: beside `export_dir`); the
        temporary directory is removed and `export_dir` left as it was.
    """
    export_dir = os.fspath(export_dir)
    target = os.path.abspath(export_dir)
    parent, name = os.path.split(target)
    if os.path.isdir(target) and os.listdir(target):
        kept = keep_as_attempt(target, keep_extension=False)
        print(f"{export_dir} already held files: kept as {kept}.", flush=True)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name=SERVING_ENDPOINT,
        fn=lambda inputs: model(inputs, training=False),
        input_signature=[tf.TensorSpec((None,) + tuple(input_shape), dtype, name=input_name)],
    )
    scratch = None
    try:
        os.makedirs(parent, exist_ok=True)
        scratch = tempfile.mkdtemp(dir=parent, prefix=f".tmp-{name}-")
        archive.write_out(scratch, verbose=False)
        _write_record(scratch, model_dir)
        os.chmod(scratch, 0o777 & ~_umask())   # mkdtemp makes it owner-only
        if os.path.isdir(target):   # empty (checked above): rename needs it gone
            os.rmdir(target)
        os.rename(scratch, target)
    except BaseException as error:
        if scratch is not None and os.path.isdir(scratch):
            shutil.rmtree(scratch, ignore_errors=True)
        if isinstance(error, write_errors()):
            checkpoint = last_checkpoint(model_dir) if model_dir else \
                last_checkpoint(parent)
            raise write_failed(export_dir, error, checkpoint=checkpoint) from None
        raise
    return export_dir


def _write_record(directory, model_dir):
    """EXPORT_RECORD: which run wrote this export (digests of its directory
    and identity, export_record); nothing when the export is not a run's
    (no `model_dir` or no identity)."""
    identity = os.path.join(model_dir, IDENTITY_FILE) if model_dir else None
    if identity is not None and os.path.isfile(identity):
        write_json_atomic(os.path.join(directory, EXPORT_RECORD),
                          export_record(model_dir, read_json(identity)))


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_final_files(model, model_dir, results, *, export=None):
    """Writes a finished training's files: ``model.keras``, the export, then
    ``results.json``.

    The result file marks the run finished (a rerun of the command reports
    it and writes nothing), so it comes last: a model file or an export that
    cannot be written (a full disk) ends the run with RunWriteFailed's one
    line and no result file, and the same command resumes from the last
    checkpoint and writes them all.  If the result file itself cannot be
    written, the export just made is removed again, so that the rerun can
    export into the same --export_dir.

    Args:
      export: None, or (export_dir, {keyword arguments of
        export_saved_model}) for this process to export (the chief).
    Returns:
      `results`, with ``export_dir`` added when exported.
    """
    write_file_atomic(os.path.join(model_dir, MODEL_FILE), model.save)
    exported = None
    if export is not None:
        export_dir, options = export
        exported = export_saved_model(model, export_dir, model_dir=model_dir, **options)
        results["export_dir"] = export_dir
    try:
        write_json_atomic(os.path.join(model_dir, TRAIN_RESULT_FILE), results)
    except RunWriteFailed:
        if exported is not None:
            shutil.rmtree(exported, ignore_errors=True)
        raise
    return results
