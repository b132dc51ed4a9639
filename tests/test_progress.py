"""The epoch progress bar shows the running means it is given."""

import time

import keras

from datanas.engine.progress import epoch_progbar


def _lines(progbar, values, capsys):
    for step, value in enumerate(values, start=1):
        time.sleep(0.06)   # past the bar's redraw interval, so every update is drawn
        progbar.update(step, values=[("loss", value)])
    return capsys.readouterr().out


def test_running_means_are_shown_as_given(capsys):
    # Running means of batch losses 3, 2, 1 are 3, 2.5, 2.
    out = _lines(epoch_progbar(3, verbose=1), [3.0, 2.5, 2.0], capsys)
    assert "loss: 2.5000" in out and "loss: 2.0000" in out, out
    # Keras' default bar would average the running means again (2.75 after two steps).
    out = _lines(keras.utils.Progbar(3, verbose=1), [3.0, 2.5, 2.0], capsys)
    assert "loss: 2.7500" in out, out


def test_no_progbar_when_silent():
    assert epoch_progbar(3, verbose=0) is None
