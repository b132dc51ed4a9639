"""A cell's operation probabilities as an RGB heat-map, drawn with numpy only.

One row per (node, input) edge, one column per candidate op; the nodes'
blocks of rows are separated by a white line; a colour scale (0 at the
bottom, 1 at the top) stands at the right.  The colours run from dark
purple (0) through blue and green to yellow (1), anchors taken from the
viridis scale, so the picture reads the same in grey.  No matplotlib: the
image is a ``uint8`` array ``[height, width, 3]`` ready for
``tf.summary.image`` or any PNG writer.
"""

import numpy as np

__all__ = ["colour_map", "probability_heatmap"]

# (position, RGB) anchors of the colour scale (viridis at 0, .25, .5, .75, 1).
_ANCHORS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
_COLOURS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98],
                     [253, 231, 37]], dtype=np.float64)
_SEPARATOR = np.array([255, 255, 255], dtype=np.uint8)


def colour_map(values):
    """uint8 RGB colours [..., 3] of values in [0, 1] (clipped; NaN -> 0)."""
    values = np.clip(np.nan_to_num(np.asarray(values, np.float64), nan=0.0), 0.0, 1.0)
    channels = [np.interp(values, _ANCHORS, _COLOURS[:, c]) for c in range(3)]
    return np.round(np.stack(channels, axis=-1)).astype(np.uint8)


def probability_heatmap(node_matrices, *, cell_height=10, cell_width=16, separator=2,
                        scale_width=8):
    """The heat-map of a cell's probabilities.

    Args:
      node_matrices: one array ``[inputs_of_node, num_ops]`` of values in
        [0, 1] per node (all with the same number of ops).
      cell_height, cell_width: pixels of one (edge, op) entry.
      separator: pixels of the white line between two nodes' rows (and before
        the colour scale).
      scale_width: pixels of the colour scale at the right (0: none).
    Returns:
      uint8 array [height, width, 3].
    """
    matrices = [np.atleast_2d(np.asarray(m, np.float64)) for m in node_matrices]
    if not matrices:
        raise ValueError("probability_heatmap needs at least one node's matrix; got none")
    num_ops = {m.shape[1] for m in matrices}
    if len(num_ops) != 1:
        raise ValueError(f"every node's matrix needs the same number of ops (columns); got "
                         f"{sorted(num_ops)}")
    num_ops = num_ops.pop()
    blocks = []
    for index, matrix in enumerate(matrices):
        if index:
            blocks.append(np.broadcast_to(_SEPARATOR, (separator, num_ops * cell_width, 3)))
        pixels = np.repeat(np.repeat(colour_map(matrix), cell_height, axis=0), cell_width, axis=1)
        blocks.append(pixels)
    image = np.concatenate(blocks, axis=0)
    if scale_width:
        height = image.shape[0]
        ramp = colour_map(np.linspace(1.0, 0.0, height))[:, None, :]
        gap = np.broadcast_to(_SEPARATOR, (height, separator, 3))
        image = np.concatenate([image, gap, np.repeat(ramp, scale_width, axis=1)], axis=1)
    return np.ascontiguousarray(image, dtype=np.uint8)
