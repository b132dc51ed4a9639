"""Parameter and multiply-add counts of a network (paper Tables 1, 2)."""

import tensorflow as tf

__all__ = ["count_parameters", "count_multiply_adds", "IMAGENET_MOBILE_MULT_ADDS"]

# The ImageNet "mobile setting" limit used by NASNet, DARTS and DATA.
IMAGENET_MOBILE_MULT_ADDS = 600e6


def count_parameters(model):
    """Inference-time parameters (auxiliary head excluded when present)."""
    variables = model.main_variables() if hasattr(model, "main_variables") else model.weights
    trainable_ids = {id(v) for v in model.trainable_weights}
    return int(sum(int(tf.size(v)) for v in variables if id(v) in trainable_ids))


def count_multiply_adds(model, image_shape):
    """Multiply-adds of one inference forward pass on one image.

    Uses the TF profiler's float-operation count of the traced graph
    (convolutions, depthwise convolutions, matmuls, ...) and halves it
    (one multiply-add = two floating-point operations).
    """
    spec = tf.TensorSpec((1,) + tuple(image_shape), tf.float32)
    concrete = tf.function(lambda images: model(images, training=False)).get_concrete_function(spec)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph=concrete.graph, options=options)
    return int(profile.total_float_ops // 2)
