"""SavedModel export of a trained network (inference: inputs -> logits)."""

import os

import keras
import tensorflow as tf

from datanas.engine.run_identity import keep_as_attempt

__all__ = ["export_saved_model", "SERVING_ENDPOINT"]

SERVING_ENDPOINT = "serve"


def export_saved_model(model, export_dir, input_shape, dtype=tf.float32, input_name="images"):
    """Writes a TF SavedModel with one endpoint ``serve(inputs) -> logits``.

    `input_shape` excludes the batch axis (None for a variable length).  For
    image networks the auxiliary head is not part of the endpoint
    (``model(images)`` returns the main logits only); a language model serves
    ``tokens [batch, time] -> logits [batch, time, vocab]`` from a zero state.
    Reload with ``tf.saved_model.load(export_dir).serve`` or
    ``keras.layers.TFSMLayer(export_dir, call_endpoint="serve")``; the
    endpoint is also the ``serving_default`` signature for TF Serving.

    An export is never replaced: a directory that already holds files is
    first kept under ``<export_dir>.attempt-<n>`` (the trainers refuse such
    a directory before a run starts, or keep an extended run's earlier
    export so; this covers one that appeared since).
    """
    if os.path.isdir(export_dir) and os.listdir(export_dir):
        kept = keep_as_attempt(export_dir, keep_extension=False)
        print(f"{export_dir} already held files: kept as {kept}.", flush=True)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name=SERVING_ENDPOINT,
        fn=lambda inputs: model(inputs, training=False),
        input_signature=[tf.TensorSpec((None,) + tuple(input_shape), dtype, name=input_name)],
    )
    archive.write_out(export_dir, verbose=False)
    return export_dir
