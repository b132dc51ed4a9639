"""The suite's guard against outcomes that depend on test order (conftest.py):
a test after which a process-global TensorFlow/Keras setting differs fails,
naming the setting; `global_seed` leaves every global generator as it was."""

import os
import shutil
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TESTS = textwrap.dedent('''
    import random

    import keras
    import numpy as np
    import tensorflow as tf
    from keras.src.utils.rng_utils import get_random_seed

    def test_seeds_the_generators_globally():
        keras.utils.set_random_seed(1)


    def test_enables_op_determinism():
        tf.config.experimental.enable_op_determinism()


    def test_sets_a_global_policy():
        keras.mixed_precision.set_global_policy("mixed_bfloat16")


    def test_seeds_through_the_fixture(global_seed):
        global_seed(1)
        assert get_random_seed() == 1
        random.random(), np.random.random(), tf.random.uniform([1])


    def test_the_generators_are_as_the_leaking_test_left_them():
        # The fixture's test restored what it found: the state right after
        # the leaking test's keras.utils.set_random_seed(1).
        assert get_random_seed() == 1
        draws = (random.random(), float(np.random.random()), float(tf.random.uniform([])))
        keras.utils.set_random_seed(1)
        assert draws == (random.random(), float(np.random.random()),
                         float(tf.random.uniform([])))
''')


def test_a_test_that_leaves_global_state_changed_fails_naming_it(tmp_path):
    shutil.copy(os.path.join(ROOT, "tests", "conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_leaks.py").write_text(TESTS, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "test_leaks.py", "-q", "-rE", "-p", "no:cacheprovider",
         "-p", "no:xdist", "-p", "no:randomly"], cwd=tmp_path, capture_output=True, text=True,
        timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    # pytrace=False: the errors section shows each message on its own line.
    leaks = [line for line in proc.stdout.splitlines()
             if line.startswith("the test changed process-global state")]
    prefix = "the test changed process-global state that later tests would inherit: "
    assert leaks == [
        f"{prefix}TensorFlow global seed (tf.random.set_seed, keras.utils.set_random_seed): "
        "None -> 1; Keras global seed (keras.utils.set_random_seed): None -> 1",
        f"{prefix}op determinism (tf.config.experimental.enable_op_determinism): False -> True",
        f"{prefix}Keras dtype policy (keras.config.set_dtype_policy, "
        "keras.mixed_precision.set_global_policy): 'float32' -> 'mixed_bfloat16'",
    ], proc.stdout[-3000:]
    # The tests themselves passed (the last one checks the generators).
    assert "5 passed, 3 errors" in proc.stdout, proc.stdout[-3000:]
