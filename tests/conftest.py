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


def readme_python_blocks():
    """The code of every ```python block of README.md, in order."""
    import re  # pylint: disable=import-outside-toplevel

    readme = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "README.md")
    with open(readme, encoding="utf-8") as handle:
        return re.findall(r"^```python\n(.*?)^```", handle.read(), re.MULTILINE | re.DOTALL)


@pytest.fixture(name="readme_python_blocks")
def readme_python_blocks_fixture():
    return readme_python_blocks()

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
    """Under `--dist loadgroup` (the README's test command) tests that share a
    module-scoped fixture (e.g. one search run that several tests read) run on
    one worker, so the fixture is built once; every other test is scheduled
    on its own, so one long test file does not hold up the suite."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        if any(defs and defs[-1].scope == "module" for defs in info.name2fixturedefs.values()):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
