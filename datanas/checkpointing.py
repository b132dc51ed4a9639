"""Every variable of a Keras model, in a form `tf.train.Checkpoint` saves.

Keras 3 layers expose only their attribute sub-layers to TensorFlow's
checkpoint object graph: layers kept in a Python list (the cells of our
networks) are left out, so `tf.train.Checkpoint(model=model)` silently
skipped them. Trainable weights still came back through the optimizer's
references, but batch-norm moving statistics did not, and a resumed run
evaluated with different statistics than an uninterrupted one. Checkpoints
therefore also carry this explicit list of all variables, in the model's own
(construction) order: variable paths are not usable as keys, because Keras
numbers auto-named layers per process (``separable_conv2d_29``), so the same
network built after another one gets other paths.
"""

import tensorflow as tf

__all__ = ["model_variables"]


def model_variables(model):
    """A trackable listing all of `model`'s variables in construction order."""
    holder = tf.Module(name="model_variables")
    holder.ordered = list(model.variables)
    return holder
