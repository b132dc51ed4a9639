"""Per-epoch progress bars that show the epoch's running means.

Keras' Progbar averages the values it is given while an epoch runs but, on
the epoch's last step, replaces them with that step's values, so the line a
user reads at the end of every epoch would show one batch.  Callers here pass
running means of the whole epoch (resumed steps included) and the bar shows
them as given.
"""

import keras

__all__ = ["epoch_progbar"]


def epoch_progbar(steps_per_epoch, verbose):
    """A Progbar for one epoch (None when `verbose` is 0) that displays the
    values passed to `update` unchanged: pass running means."""
    if not verbose:
        return None
    # An empty stateless set makes every metric "stateful": shown as passed.
    return keras.utils.Progbar(steps_per_epoch, verbose=verbose, stateless_metrics=())
