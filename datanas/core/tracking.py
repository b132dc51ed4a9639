"""A list of Keras layers that TensorFlow's checkpoint object graph can see.

Keras 3 layers track sub-layers kept in a plain Python list for their own
bookkeeping (``model.weights``, ``.keras`` files), but TensorFlow's object
graph -- what ``tf.train.Checkpoint`` and SavedModel walk -- only sees
attributes.  A network whose cells live in a Python list therefore saves
only its stem and classifier under ``tf.train.Checkpoint(model=net)``.

``LayerList`` stores its items as attributes ``item_0``, ``item_1``, ... of a
layer, so every variable gets a stable checkpoint path such as
``model/cells/item_3/edges/item_2/...``: the same network built in another
process, after other layers, restores exactly.
"""

import keras

__all__ = ["LayerList", "SeedStateTracking"]


@keras.saving.register_keras_serializable(package="datanas")
class LayerList(keras.layers.Layer):
    """An ordered, checkpoint-tracked container of layers (no call of its own).

    Args:
      layers: initial layers (more can be appended before the parent is built).
    """

    def __init__(self, layers=(), **kwargs):
        super().__init__(**kwargs)
        self._size = 0
        for layer in layers:
            self.append(layer)
        # A container has no variables of its own; its items are built by
        # the layer that owns it.
        self.built = True

    def append(self, layer):
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(f"LayerList holds Keras layers, got {type(layer).__name__}.")
        setattr(self, f"item_{self._size}", layer)
        self._size += 1

    def __len__(self):
        return self._size

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._size))]
        position = index + self._size if index < 0 else index
        if not 0 <= position < self._size:
            raise IndexError(f"LayerList index {index} out of range for {self._size} items.")
        return getattr(self, f"item_{position}")

    def __iter__(self):
        return (getattr(self, f"item_{i}") for i in range(self._size))

    def call(self, inputs):
        raise TypeError("LayerList is a container; call its items.")

    def get_config(self):
        return {**super().get_config(),
                "layers": [keras.saving.serialize_keras_object(layer) for layer in self]}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        layers = [keras.saving.deserialize_keras_object(item) for item in config.pop("layers")]
        return cls(layers, **config)


class SeedStateTracking:
    """Mixin for a layer with ``self.seed_generator``: its state variable joins
    TensorFlow's object graph (Keras keeps it out), so a checkpoint restores
    the random stream (drop-path masks, unseeded samples) exactly."""

    def _trackable_children(self, save_type="checkpoint", **kwargs):
        children = super()._trackable_children(save_type, **kwargs)
        generator = getattr(self, "seed_generator", None)
        if save_type == "checkpoint" and generator is not None:
            children["seed_generator_state"] = generator.state
        return children
