"""TensorFlow's generator-dataset malloc patch and its undoing (engine/allocator.py)."""

import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent("""
    import resource, sys
    import numpy as np, tensorflow as tf
    from datanas.core.allocator import keep_malloc_thresholds
    if sys.argv[1] == "keep":
        assert keep_malloc_thresholds()
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    for _ in strategy.distribute_datasets_from_function(
            lambda ctx: tf.data.Dataset.range(4).batch(2)):
        pass
    np.ones(1 << 18)   # warm the heap
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(200):
        np.ones(1 << 18).sum()    # 2 MB, allocated and freed like an activation
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _page_faults(mode):
    proc = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                          timeout=300, env={"TF_CPP_MIN_LOG_LEVEL": "3",
                                            "PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(
                                                sys.path)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return int(proc.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_distributed_datasets_no_longer_make_every_large_tensor_page_fault():
    """Under TensorFlow's patch each 2 MB allocation is a fresh mmap (about 512
    page faults of 4 KB); with the thresholds kept, the heap reuses the block."""
    patched, kept = _page_faults("patched"), _page_faults("keep")
    assert patched > 200 * 256, patched
    assert kept < 0.05 * patched, (kept, patched)
