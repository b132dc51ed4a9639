import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# The suite runs two test files at a time (pytest -n 2) on a 2-core machine:
# one op thread per process (trainers started by tests inherit it) instead of
# two processes each spreading tiny ops over every core (README "Benchmark").
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
# The same kernels on every host: with oneDNN on, some CPUs (an AVX512-BF16
# EPYC host of this sandbox) give convolutions of empty batches wrong shapes,
# which --sparse_skip=examples refuses (test_mixed_edge.py); its tests need
# TensorFlow's own kernels to run there too.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


import shutil  # noqa: E402

import pytest  # noqa: E402

# PTB's real validation and test text, in ../shared beside the repository.
PTB_SAMPLE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              os.pardir, "shared", "data", "ptb-sample")


def _process_globals():
    """{what: value} of the process-global TensorFlow/Keras settings a test can
    change and the tests after it in the same process (an xdist worker) would
    then run under.  Read without initialising TensorFlow's runtime, so a test
    may still configure devices or thread pools after it."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    import keras  # pylint: disable=import-outside-toplevel
    from keras.src.backend.common import global_state  # pylint: disable=import-outside-toplevel
    from tensorflow.core.protobuf import config_pb2  # pylint: disable=import-outside-toplevel
    from tensorflow.python.eager import context  # pylint: disable=import-outside-toplevel
    from tensorflow.python.framework import config as tf_config  # pylint: disable=import-outside-toplevel

    ctx = context.context()
    call_options = ctx._thread_local_data.function_call_options  # pylint: disable=protected-access
    policy = global_state.get_global_attribute("dtype_policy")
    return {
        # Cannot be switched off again for kernels already built: code that
        # enables it (make_deterministic, --deterministic_ops) runs in a subprocess.
        "op determinism (tf.config.experimental.enable_op_determinism)":
            tf_config.is_op_determinism_enabled(),
        "Grappler options (tf.config.optimizer.set_experimental_options)":
            tf.config.optimizer.get_experimental_options(),
        "XLA JIT (tf.config.optimizer.set_jit)": tf.config.optimizer.get_jit(),
        # TensorFlow creates the options at the first call; what a test may
        # change in them is the Grappler rewrites (make_deterministic).
        "Grappler rewrites of tf.function calls (make_deterministic)":
            "" if call_options is None else str(config_pb2.ConfigProto.FromString(
                call_options.config_proto_serialized).graph_options.rewrite_options),
        "intra-op threads (tf.config.threading.set_intra_op_parallelism_threads)":
            tf.config.threading.get_intra_op_parallelism_threads(),
        "inter-op threads (tf.config.threading.set_inter_op_parallelism_threads)":
            tf.config.threading.get_inter_op_parallelism_threads(),
        "tf.config.run_functions_eagerly": tf.config.functions_run_eagerly(),
        "soft device placement (tf.config.set_soft_device_placement)":
            tf.config.get_soft_device_placement(),
        "TensorFlow global seed (tf.random.set_seed, keras.utils.set_random_seed)":
            ctx._seed,  # pylint: disable=protected-access
        "Keras global seed (keras.utils.set_random_seed)":
            global_state.get_global_attribute("global_random_seed"),
        # Keras builds the policy from floatx the first time it is read.
        "Keras dtype policy (keras.config.set_dtype_policy, "
        "keras.mixed_precision.set_global_policy)":
            keras.config.floatx() if policy is None else policy.name,
        "keras.config.floatx": keras.config.floatx(),
        "keras.config.epsilon": keras.config.epsilon(),
        "keras.config.image_data_format": keras.config.image_data_format(),
        "TF_CONFIG environment variable": os.environ.get("TF_CONFIG"),
    }


@pytest.fixture(autouse=True)
def _no_process_global_change_outlives_the_test():
    """Fails the test after which a process-global TensorFlow/Keras setting
    differs from before it, naming the setting: under xdist a test file shares
    its worker with other files, so a change would make their outcome depend
    on which files ran first (tests/check_order.sh runs the suite in another
    order).  Restore the setting in the test (`global_seed` for seeds) or run
    the code that changes it in a subprocess."""
    before = _process_globals()
    yield
    after = _process_globals()
    leaked = [f"{name}: {before[name]!r} -> {after[name]!r}"
              for name in before if after[name] != before[name]]
    if leaked:
        pytest.fail("the test changed process-global state that later tests would inherit: "
                    + "; ".join(leaked), pytrace=False)


@pytest.fixture
def global_seed():
    """keras.utils.set_random_seed for one test: global_seed(n) seeds Python's,
    NumPy's, TensorFlow's and Keras' global generators (may be called again);
    after the test every one of them is as before it, so unseeded draws of
    later tests do not depend on which tests ran first.  Request it also in a
    test whose code under test seeds them."""
    import random  # pylint: disable=import-outside-toplevel

    import keras  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from keras.src.backend.common import global_state  # pylint: disable=import-outside-toplevel
    from keras.src.random import seed_generator  # pylint: disable=import-outside-toplevel
    from tensorflow.python.eager import context  # pylint: disable=import-outside-toplevel

    ctx = context.context()
    # pylint: disable=protected-access
    tf_seed, tf_rng = ctx._seed, getattr(ctx, "_rng", None)   # _rng: once a seed was set
    tf_rng_state = None if tf_rng is None else tf_rng.getstate()
    graph_seed = tf.compat.v1.get_default_graph().seed
    keras_seed = global_state.get_global_attribute("global_random_seed")
    keras_generator = global_state.get_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR)
    python_state, numpy_state = random.getstate(), np.random.get_state()
    yield keras.utils.set_random_seed
    ctx._seed, ctx._rng = tf_seed, tf_rng
    if tf_rng is not None:
        tf_rng.setstate(tf_rng_state)
    if ctx._context_handle is not None:
        ctx.clear_kernel_cache()   # random kernels keep their streams (as tf.random.set_seed)
    tf.compat.v1.get_default_graph().seed = graph_seed
    global_state.set_global_attribute("global_random_seed", keras_seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, keras_generator)
    random.setstate(python_state)
    np.random.set_state(numpy_state)


@pytest.fixture(autouse=True)
def _run_locks_end_with_the_test():
    """A test stands for one process: run directories it locked are released
    when it ends (a process's locks are released at exit), so a later test's
    subprocess may resume them."""
    yield
    from datanas.engine.run_lock import release_all_run_locks  # pylint: disable=import-outside-toplevel
    release_all_run_locks()


@pytest.fixture(scope="session")
def ptb_dir(tmp_path_factory):
    """Real PTB text in the DARTS layout: train.txt = PTB's validation file,
    valid.txt / test.txt = lines 0-299 / 300-599 of PTB's test file."""
    assert os.path.isdir(PTB_SAMPLE_DIR), (
        f"{PTB_SAMPLE_DIR} is missing: the language-model tests read PTB's real text from "
        "../shared/data/ptb-sample beside the repository")
    directory = tmp_path_factory.mktemp("penn")
    with open(os.path.join(PTB_SAMPLE_DIR, "test.txt"), encoding="utf-8") as handle:
        test_lines = handle.readlines()
    shutil.copy(os.path.join(PTB_SAMPLE_DIR, "valid.txt"), directory / "train.txt")
    (directory / "valid.txt").write_text("".join(test_lines[:300]), encoding="utf-8")
    (directory / "test.txt").write_text("".join(test_lines[300:600]), encoding="utf-8")
    return str(directory)



@pytest.fixture(scope="session")
def wt2_dir(ptb_dir, tmp_path_factory):
    """The same real text in WikiText-2's layout (wikitext-2/wiki.{train,valid,test}.tokens),
    each file opening with a WikiText article heading line as the real files do."""
    directory = tmp_path_factory.mktemp("wt2") / "wikitext-2"
    directory.mkdir()
    for split, source in (("train", "train.txt"), ("valid", "valid.txt"), ("test", "test.txt")):
        with open(os.path.join(ptb_dir, source), encoding="utf-8") as handle:
            text = handle.read()
        (directory / f"wiki.{split}.tokens").write_text(
            f" \n = Penn Treebank {split} = \n \n{text}", encoding="utf-8")
    return str(directory.parent)


def markdown_python_blocks(relative_path):
    """The code of every ```python block of a Markdown file of the
    repository (path relative to its root), in order."""
    import re  # pylint: disable=import-outside-toplevel

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        relative_path)
    with open(path, encoding="utf-8") as handle:
        return re.findall(r"^```python\n(.*?)^```", handle.read(), re.MULTILINE | re.DOTALL)


def readme_python_blocks():
    """The code of every ```python block of README.md, in order."""
    return markdown_python_blocks("README.md")


@pytest.fixture(name="readme_python_blocks")
def readme_python_blocks_fixture():
    return readme_python_blocks()


@pytest.fixture(name="api_page_python_blocks")
def api_page_python_blocks_fixture():
    return markdown_python_blocks(os.path.join("docs", "api.md"))

def _summary_tags(log_dir):
    """{tag: [(step, plugin name)]} of every TensorBoard event file under `log_dir`."""
    import glob  # pylint: disable=import-outside-toplevel

    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    found = {}
    for path in glob.glob(os.path.join(str(log_dir), "**", "events.out.tfevents.*"),
                          recursive=True):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found.setdefault(value.tag, []).append(
                    (event.step, value.metadata.plugin_data.plugin_name))
    return found


def _load_example(name):
    import importlib.util  # pylint: disable=import-outside-toplevel
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(f"example_{name}",
                                                  os.path.join(root, "examples", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def load_example():
    """Imports examples/<name>.py as a module: load_example(name)."""
    return _load_example


@pytest.fixture
def summary_tags():
    """Reads the summaries of a TensorBoard directory: summary_tags(log_dir)."""
    return _summary_tags


def pytest_collection_modifyitems(config, items):  # pylint: disable=unused-argument
    """Under `--dist loadgroup` (the README's command uses `--dist loadfile`,
    which keeps a file on one worker anyway) tests that share a
    module-scoped fixture (e.g. one search run that several tests read) run on
    one worker, so the fixture is built once; every other test is scheduled
    on its own, so one long test file does not hold up the suite."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        if any(defs and defs[-1].scope == "module" for defs in info.name2fixturedefs.values()):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
