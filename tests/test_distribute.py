"""Strategies, distributed search steps, and exact resume after a kill."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf

from datanas.engine.strategy import build_strategy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
# A reduced op set keeps each trainer process's graph build short.
TINY_SEARCH = ["--dataset=digits", "--layers=3", "--nodes=2", "--init_channels=4",
               "--train_size=480", "--batch_size=32", "--M=2", "--seed=3",
               "--primitives=none,max_pool_3x3,skip_connect,sep_conv_3x3"]


def test_unknown_strategy_and_too_many_gpus():
    with pytest.raises(ValueError, match="'ps'"):
        build_strategy("ps")
    visible = len(tf.config.list_physical_devices("GPU"))
    with pytest.raises(ValueError, match=f"--num_gpus={visible + 1}"):
        build_strategy("one_device", num_gpus=visible + 1)


def test_multi_worker_needs_a_cluster(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        build_strategy("multi_worker_mirrored")
    with pytest.raises(ValueError, match="--task_index"):
        build_strategy("multi_worker_mirrored", worker_hosts=["localhost:1", "localhost:2"],
                       task_index=5)


def _tpu_available():
    return bool(tf.config.list_logical_devices("TPU")) or os.path.exists("/dev/accel0")


@pytest.mark.skipif(_tpu_available(), reason="a TPU is attached: the error path cannot be shown")
def test_tpu_without_tpu_gives_one_clear_error():
    with pytest.raises(ValueError, match="could not reach a TPU at --tpu="):
        build_strategy("tpu", tpu_address="")


@pytest.mark.skipif(not _tpu_available(), reason="no TPU on this machine")
def test_tpu_strategy_constructs():
    strategy = build_strategy("tpu", tpu_address="")
    assert strategy.num_replicas_in_sync >= 1


MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np, tensorflow as tf, keras
    from datanas.engine.strategy import build_strategy, configure_cpu_devices
    from datanas.searching.config import SearchConfig
    from datanas.searching.searcher import Searcher
    from datanas.spaces.darts_cnn.supernet import SearchNetwork
    configure_cpu_devices(2)
    tf.config.experimental.enable_op_determinism()
    rng = np.random.default_rng(0)
    half_x = rng.normal(size=(5, 8, 8, 8, 1)).astype("float32")
    half_y = rng.integers(0, 10, size=(5, 8)).astype("int32")
    # Each global batch = the same 8 examples twice, so per-replica batch-norm
    # statistics equal the global ones and the comparison isolates loss
    # scaling and gradient aggregation.
    batches = [(np.concatenate([x, x]), np.concatenate([y, y])) for x, y in zip(half_x, half_y)]

    def run(strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = SearchNetwork(10, init_channels=4, num_cells=3, num_nodes=2, num_samples=2,
                                  seed=0, primitives=("none", "skip_connect", "sep_conv_3x3",
                                                      "max_pool_3x3"))
            model.build((None, 8, 8, 1))
        searcher = Searcher(model, SearchConfig(epochs=1, seed=1), steps_per_epoch=5,
                            strategy=strategy, global_batch_size=16)
        losses = []
        for x, y in batches:
            data = strategy.experimental_distribute_dataset(
                tf.data.Dataset.from_tensors((x, y)))
            for images, labels in data:
                losses.append(float(searcher.joint_step((images, labels))["loss"]))
        return losses, [v.numpy().tolist() for v in model.architecture_variables]

    one = run(build_strategy("one_device"))
    mirrored = build_strategy("mirrored")
    assert mirrored.num_replicas_in_sync == 2, mirrored.num_replicas_in_sync
    two = run(mirrored)
    print("RESULT " + json.dumps({"one": one, "two": two}))
""")


def test_mirrored_two_cpu_replicas_match_one_device():
    proc = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    (loss_1, arch_1), (loss_2, arch_2) = result["one"], result["two"]
    # Summation order differs (two half-batch sums vs one), so allow float noise
    # that grows over the steps; a wrong loss scale or a missing all-reduce
    # would be off by a factor of 2.
    np.testing.assert_allclose(loss_2, loss_1, rtol=1e-3, atol=1e-5)
    for a, b in zip(arch_1, arch_2):
        np.testing.assert_allclose(np.array(b), np.array(a), rtol=1e-2, atol=1e-5)
    # The architecture logits moved, so the comparison is not trivially equal.
    assert max(np.abs(np.array(a)).max() for a in arch_1) > 1e-3


STATISTICS_SCRIPT = textwrap.dedent("""
    import json
    import numpy as np, tensorflow as tf, keras
    from datanas.engine.steps import batch_norm_statistics
    from datanas.engine.strategy import build_strategy, configure_cpu_devices
    from datanas.searching.config import SearchConfig
    from datanas.searching.searcher import Searcher
    from datanas.spaces.darts_cnn.genotype import DARTS_V2
    from datanas.spaces.darts_cnn.networks import NetworkCIFAR
    from datanas.spaces.darts_cnn.supernet import SearchNetwork
    from datanas.training.trainer import GenotypeTrainer, TrainConfig
    configure_cpu_devices(2)
    strategy = build_strategy("mirrored")
    rng = np.random.default_rng(0)
    # The two replicas' halves differ (means 0 and 3), so their batch statistics do.
    images = np.concatenate([rng.normal(0, 1, (8, 8, 8, 1)),
                             rng.normal(3, 2, (8, 8, 8, 1))]).astype("float32")
    labels = rng.integers(0, 10, 16).astype("int32")

    def spread(model):
        # Largest difference between the two replicas' copies of any statistic,
        # and how far the first copy moved from its initial value.
        stats = batch_norm_statistics(model)
        copies = [[c.numpy() for c in v._value.values] for v in stats]
        moved = max(float(np.abs(a - (0.0 if v.name == "moving_mean" else 1.0)).max())
                    for (a, _), v in zip(copies, stats))
        return len(stats), max(float(np.abs(a - b).max()) for a, b in copies), moved

    def batches():
        return strategy.experimental_distribute_dataset(
            tf.data.Dataset.from_tensors((images, labels)))

    result = {}
    keras.utils.set_random_seed(0)
    with strategy.scope():
        network = NetworkCIFAR(DARTS_V2, num_classes=10, init_channels=4, layers=3,
                               auxiliary=False)
        network.build((None, 8, 8, 1))
    trainer = GenotypeTrainer(network, TrainConfig(epochs=1), steps_per_epoch=1,
                              strategy=strategy, global_batch_size=16)
    for batch in batches():
        trainer.train_step(batch)
    result["training"] = spread(network)
    for execution in ("host", "graph"):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = SearchNetwork(10, init_channels=4, num_cells=3, num_nodes=2, num_samples=2,
                                  seed=0, primitives=("none", "skip_connect", "sep_conv_3x3"))
            model.build((None, 8, 8, 1))
        searcher = Searcher(model, SearchConfig(epochs=1, seed=1, execution=execution),
                            steps_per_epoch=1, strategy=strategy, global_batch_size=16)
        for batch in batches():
            searcher.joint_step(batch)
        result["search_" + execution] = spread(model)
    print("RESULT " + json.dumps(result))
""")


def test_replicas_keep_one_copy_of_the_batch_norm_statistics():
    """Keras 3 creates batch-norm moving statistics with aggregation 'none': under
    MirroredStrategy each replica would keep its own copy, updated from its own
    half of the batch (evaluation then mixes them; the checkpoint keeps the first
    replica's).  Training and search steps average them over replicas."""
    proc = subprocess.run([sys.executable, "-c", STATISTICS_SCRIPT], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert set(result) == {"training", "search_host", "search_graph"}
    for name, (count, spread, moved) in result.items():
        assert count > 10, name
        assert moved > 0.05, name       # the statistics were updated ...
        assert spread < 1e-6, name      # ... to the same value on both replicas


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_mirrored_two_local_workers_agree(tmp_path):
    hosts = ",".join(f"localhost:{p}" for p in _free_ports(2))
    model_dir = tmp_path / "run"
    env = {k: v for k, v in ENV.items() if k != "TF_CONFIG"}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "trainers.search_cifar", *TINY_SEARCH, "--epochs=1",
         f"--model_dir={model_dir}", "--distribution_strategy=multi_worker_mirrored",
         f"--worker_hosts={hosts}", f"--task_index={i}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)]
    outputs = [p.communicate(timeout=900) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    chief = json.loads((model_dir / "arch_probabilities.json").read_text())
    worker = json.loads((model_dir / "worker_1" / "arch_probabilities.json").read_text())
    assert chief == worker
    assert (model_dir / "genotype.json").read_text() == \
        (model_dir / "worker_1" / "genotype.json").read_text()
    config = json.loads((model_dir / "search_config.json").read_text())
    assert config["distribution"]["replicas"] == 2


# Reproducibility is claimed for the full DARTS op set on 28x28 images.
# 320 images: 9 steps per epoch of 32 (10% held out), enough to kill
# mid-epoch twice with checkpoints every 3 steps.
FULL_SEARCH = ["--dataset=fashion_mnist", "--layers=3", "--nodes=2", "--init_channels=4",
               "--train_size=320", "--batch_size=32", "--M=2", "--seed=3"]


def _search_cmd(model_dir, extra=()):
    return [sys.executable, "-m", "trainers.search_cifar", *FULL_SEARCH, "--epochs=2",
            f"--model_dir={model_dir}", "--checkpoint_every_steps=3", "--deterministic_ops",
            *extra]


def _latest_step(model_dir):
    state = model_dir / "checkpoints" / "checkpoint"
    if not state.exists():
        return 0
    text = state.read_text()
    return int(text.split('model_checkpoint_path: "ckpt-', 1)[1].split('"', 1)[0])


def _final_state(model_dir):
    return (json.loads((model_dir / "arch_probabilities.json").read_text()),
            (model_dir / "genotype.json").read_text(),
            [json.loads(l) for l in (model_dir / "metrics.jsonl").read_text().splitlines()])


def _start_and_kill(run, kill_signal, min_step, max_step):
    """Starts the search and sends `kill_signal` once a checkpoint >= min_step exists."""
    victim = subprocess.Popen(_search_cmd(run), cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while _latest_step(run) < min_step and time.time() < deadline and victim.poll() is None:
        time.sleep(0.05)
    victim.send_signal(kill_signal)
    out, err = victim.communicate(timeout=300)
    assert _latest_step(run) < max_step, "the run finished before it was killed"
    return victim.returncode, out, err


def test_killed_search_resumes_to_the_same_architecture(tmp_path):
    """SIGKILL in epoch 1, SIGTERM (preemption) in epoch 2, then finish: with
    --deterministic_ops the result is bit-identical to an uninterrupted run
    with the same flags (full op set, 28x28 Fashion-MNIST).  The two runs are
    separate processes, so this is also the cross-process reproducibility
    claim."""
    reference = tmp_path / "reference"
    proc = subprocess.run(_search_cmd(reference), cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps_per_epoch = json.loads((reference / "search_config.json").read_text())[
        "distribution"]["steps_per_epoch"]
    assert steps_per_epoch > 6

    run = tmp_path / "killed"
    code, _, _ = _start_and_kill(run, signal.SIGKILL, 3, steps_per_epoch)
    assert code == -signal.SIGKILL
    code, out, err = _start_and_kill(run, signal.SIGTERM, steps_per_epoch + 3,
                                     2 * steps_per_epoch)
    assert code == 143, err[-2000:]
    assert "Resuming from" in out and "rerun the same command to resume" in out

    resumed = subprocess.run(_search_cmd(run), cwd=ROOT, env=ENV, capture_output=True,
                             text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming from" in resumed.stdout
    probs_ref, genotype_ref, history_ref = _final_state(reference)
    probs, genotype, history = _final_state(run)
    assert genotype == genotype_ref
    assert probs == probs_ref
    assert [h["epoch"] for h in history] == [1, 2]
    for h, h_ref in zip(history, history_ref):
        # Validation runs BN in inference mode: equal only if the resumed run
        # restored every cell's moving statistics.
        for key in ("train_loss", "train_accuracy", "valid_loss", "valid_accuracy",
                    "arch_entropy"):
            assert h[key] == h_ref[key], key


def test_deterministic_ops_switch_off_the_memory_optimizer_for_the_loop_thread():
    """The setting that made two processes agree (README 'Reproducibility')
    is in effect for the thread that runs the steps, also after the strategy
    is built, and functions still run."""
    script = textwrap.dedent("""
        import tensorflow as tf
        from datanas.engine.strategy import (build_strategy, deterministic_calls_active,
                                             make_deterministic)
        assert not deterministic_calls_active()
        strategy = build_strategy("one_device")
        make_deterministic()
        assert deterministic_calls_active()
        assert float(tf.function(lambda x: tf.add_n([x, x, x]))(tf.constant(1.0))) == 3.0
        print("OK")
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-2000:]


def test_thread_pools_are_sized_before_tensorflow_starts_and_refused_after():
    # --intra_op_threads / --inter_op_threads size TF's pools; once TF runs,
    # a change is refused in one line instead of being silently ignored.
    code = (
        "import tensorflow as tf\n"
        "from datanas.engine.strategy import configure_threads\n"
        "configure_threads(1, 2)\n"
        "print(tf.config.threading.get_intra_op_parallelism_threads(),\n"
        "      tf.config.threading.get_inter_op_parallelism_threads())\n"
        "tf.constant(1.0) + 1.0\n"
        "try:\n"
        "    configure_threads(2)\n"
        "except ValueError as error:\n"
        "    print(error)\n"
        "try:\n"
        "    configure_threads(0)\n"
        "except ValueError as error:\n"
        "    print(error)\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                          text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "1 2"
    assert lines[1].startswith("cannot set intra_op threads to 2: TensorFlow is already")
    assert lines[2] == "intra_op threads must be a positive integer, got 0."
