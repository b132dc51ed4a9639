"""TensorBoard view of the cell a training run trains.

A training run's TensorBoard shows its scalars (the run loop's) and, once,
at the end of its first epoch (step 1), what it trains:

* text ``genotype``: every (op, input) pair of every node of every cell
  (``datanas.spaces.drawing.genotype_text``);
* images ``cell/<kind>`` (normal and reduce, or recurrent): the cells drawn
  by Graphviz, when its ``dot`` program is on PATH (otherwise one line says
  so and only the text is written).

A run resumed after its first epoch does not write them again (they are in
the event files of the process that ran that epoch).
"""

from datanas.spaces.drawing import (INSTALL_HINT, cell_kinds, dot_available,
                                           genotype_dot, genotype_text, render_dot)

__all__ = ["write_cell_summaries"]


def write_cell_summaries(model, epoch, verbose=1):
    """Writes the text and images of `model.genotype` into the default
    TensorBoard writer at `epoch` 0 (0-based); does nothing at later epochs
    or for a model without a genotype.  Returns the names written."""
    genotype = getattr(model, "genotype", None)
    if epoch != 0 or genotype is None:
        return []
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    # Markdown renders a code block verbatim (two leading spaces per line would not do).
    tf.summary.text("genotype", "```\n" + genotype_text(genotype) + "```")
    written = ["genotype"]
    if not dot_available():
        if verbose:
            print("TensorBoard cell images skipped: the Graphviz program 'dot' is not on PATH; "
                  f"{INSTALL_HINT}.", flush=True)
        return written
    for kind in cell_kinds(genotype):
        image = tf.image.decode_png(render_dot(genotype_dot(genotype, kind), "png"), channels=3)
        tf.summary.image(f"cell/{kind}", image[None],
                         description=f"the {kind} cell this run trains")
        written.append(f"cell/{kind}")
    return written
