"""SavedModel export of a trained network (inference: images -> logits)."""

import keras
import tensorflow as tf

__all__ = ["export_saved_model", "SERVING_ENDPOINT"]

SERVING_ENDPOINT = "serve"


def export_saved_model(model, export_dir, image_shape):
    """Writes a TF SavedModel with one endpoint ``serve(images) -> logits``.

    The auxiliary head is not part of the endpoint (``model(images)`` returns
    the main logits only).  Reload with ``tf.saved_model.load(export_dir).serve``
    or ``keras.layers.TFSMLayer(export_dir, call_endpoint="serve")``; the
    endpoint is also the ``serving_default`` signature for TF Serving.
    """
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name=SERVING_ENDPOINT,
        fn=lambda images: model(images, training=False),
        input_signature=[tf.TensorSpec((None,) + tuple(image_shape), tf.float32, name="images")],
    )
    archive.write_out(export_dir, verbose=False)
    return export_dir
