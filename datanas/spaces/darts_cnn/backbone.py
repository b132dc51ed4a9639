"""What the supernet and the final networks share: stems and the cell stack.

* ``CifarStem``: 3x3 conv of ``stem_multiplier * C`` channels + BN; both
  cell inputs of the first cell are its output.
* ``ImageNetStem``: the mobile setting's two stride-2 stems (DARTS).
* ``stack_cells``: L cells, reductions at 1/3 and 2/3 of the depth, channels
  doubled at each, each cell told whether its predecessor reduced.
"""

import keras

from datanas.core.tracking import LayerList
from datanas.spaces.darts_cnn.ops import BN_EPSILON, BN_MOMENTUM

__all__ = ["reduction_cell_indices", "batch_norm", "CifarStem", "ImageNetStem", "stack_cells",
           "build_cell_stack", "check_int"]


def check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")


def reduction_cell_indices(num_cells):
    """Cells at 1/3 and 2/3 of the depth are reduction cells (DARTS layout)."""
    return sorted({num_cells // 3, 2 * num_cells // 3})


def batch_norm(name=None):
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


@keras.saving.register_keras_serializable(package="datanas")
class CifarStem(keras.layers.Layer):
    """3x3 conv + BN; returns the pair (x, x) of first-cell inputs.

    ``stride=2`` halves the resolution the cells see (28x28 -> 14x14): about a
    quarter of the cells' multiply-adds, for small images on small budgets.
    """

    def __init__(self, channels, stride=1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(stride, bool) or stride not in (1, 2):
            raise ValueError(f"stem stride must be 1 or 2, got {stride!r}.")
        self.channels, self.stride = channels, stride
        self.conv = keras.layers.Conv2D(channels, 3, strides=stride, padding="same",
                                        use_bias=False, name="conv")
        self.bn = batch_norm("bn")

    def build(self, input_shape):
        self.conv.build(tuple(input_shape))
        self.bn.build(tuple(self.conv.compute_output_shape(tuple(input_shape))))
        self.built = True

    def call(self, images, training=None):
        x = self.bn(self.conv(images), training=training)
        return x, x

    def compute_output_shape(self, input_shape):
        shape = tuple(self.conv.compute_output_shape(tuple(input_shape)))
        return shape, shape

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "stride": self.stride}


def _chain(layers, name):
    return LayerList(layers, name=name)


@keras.saving.register_keras_serializable(package="datanas")
class ImageNetStem(keras.layers.Layer):
    """Two stride-2 stems: s0 = conv-BN-ReLU-conv-BN (/4), s1 = ReLU-conv-BN (/8)."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        c = self.channels = channels
        self.stem0 = _chain([
            keras.layers.Conv2D(c // 2, 3, strides=2, padding="same", use_bias=False),
            batch_norm(), keras.layers.ReLU(),
            keras.layers.Conv2D(c, 3, strides=2, padding="same", use_bias=False), batch_norm()],
            "stem0")
        self.stem1 = _chain([keras.layers.ReLU(),
                             keras.layers.Conv2D(c, 3, strides=2, padding="same",
                                                 use_bias=False), batch_norm()], "stem1")

    @staticmethod
    def _shape_through(chain, shape, build):
        for layer in chain:
            if build:
                layer.build(shape)
            shape = tuple(layer.compute_output_shape(shape))
        return shape

    @staticmethod
    def _run(chain, x, training):
        for layer in chain:
            x = layer(x, training=training) if isinstance(
                layer, keras.layers.BatchNormalization) else layer(x)
        return x

    def build(self, input_shape):
        s0 = self._shape_through(self.stem0, tuple(input_shape), True)
        self._shape_through(self.stem1, s0, True)
        self.built = True

    def call(self, images, training=None):
        s0 = self._run(self.stem0, images, training)
        return s0, self._run(self.stem1, s0, training)

    def compute_output_shape(self, input_shape):
        s0 = self._shape_through(self.stem0, tuple(input_shape), False)
        return s0, self._shape_through(self.stem1, s0, False)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


def stack_cells(num_cells, init_channels, make_cell, reduction_prev_first=False):
    """LayerList of `make_cell(index, channels, reduction, reduction_prev)`."""
    if isinstance(num_cells, bool) or not isinstance(num_cells, int) or num_cells < 3:
        raise ValueError(f"num_cells must be an integer >= 3 (normal cells besides the "
                         f"reduction cells at 1/3 and 2/3 of the depth), got {num_cells!r}.")
    reductions = reduction_cell_indices(num_cells)
    channels, reduction_prev = init_channels, reduction_prev_first
    cells = []
    for index in range(num_cells):
        reduction = index in reductions
        if reduction:
            channels *= 2
        cells.append(make_cell(index, channels, reduction, reduction_prev))
        reduction_prev = reduction
    return LayerList(cells, name="cells")


def build_cell_stack(cells, s0, s1, after_cell=None):
    """Builds every cell from the stem shapes; returns the last cell's shape.

    `after_cell(index, shape)` is called after each cell (e.g. to build an
    auxiliary head at its depth).
    """
    for index, cell in enumerate(cells):
        cell.build((s0, s1))
        s0, s1 = s1, tuple(cell.compute_output_shape((s0, s1)))
        if after_cell is not None:
            after_cell(index, s1)
    return s1
