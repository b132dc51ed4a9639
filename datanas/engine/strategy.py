"""One place that builds a tf.distribute strategy, with clear errors.

Strategies: ``one_device`` (CPU or one GPU), ``mirrored`` (all GPUs of one
machine, or several logical CPU devices), ``multi_worker_mirrored`` (several
machines/processes; cluster from ``worker_hosts`` + ``task_index`` or the
``TF_CONFIG`` environment variable) and ``tpu``.

How EGS sampling is distributed: every random draw of a search step is a
pure function of (seed, global step), and the global step is a mirrored
variable, so **all replicas sample the same child architecture** in a step
and compute the same sub-graph.  Per-replica gradients of the network weights
and the architecture logits are summed across replicas (loss scaled by the
global batch) before clipping and weight decay, so a step equals the
single-device step on the global batch.
"""

import json
import os

import tensorflow as tf

__all__ = ["STRATEGIES", "build_strategy", "configure_cpu_devices", "configure_threads",
           "make_deterministic",
           "deterministic_calls_active", "is_chief", "worker_id",
           "num_input_pipelines", "run_directory", "distributed_epoch"]

STRATEGIES = ("one_device", "mirrored", "multi_worker_mirrored", "tpu")


def make_deterministic():
    """Bit-identical reruns and resumes: op determinism, and no Grappler
    for this thread's ``tf.function`` calls.

    Op determinism alone left two processes running the same full-op-set
    search apart by ~1e-7 in the first loss and ~1e-3 after an epoch
    (README "Reproducibility").  Bisected: the difference disappears with
    Grappler off and with only its memory optimizer off, which (TensorFlow's
    ``memory_optimizer.cc``, ``SchedulingPass``) may rewrite an ``AddN`` of
    more than two inputs into in-place ``AssignAdd``s on a temporary
    variable, whose summation order then follows execution order.  With only
    that pass off, the recurrent search's validation still differed in 4 of
    23 processes (a ~1e-7 difference in the carried state of one
    evaluation window, grown to ~1e-3 in the loss by the chaotic early
    model); with Grappler off, 20 of 20 processes agreed.  Grappler is not
    switchable per call through ``tf.config.optimizer``, so it is switched
    off in the function call options of the calling thread (the thread that
    runs the loop).  Every inter-op thread stays in use.  Call before the
    first step runs.
    """
    tf.config.experimental.enable_op_determinism()
    try:
        # pylint: disable=import-outside-toplevel
        from tensorflow.core.protobuf import rewriter_config_pb2
        from tensorflow.python.eager import context
        config = context.context().config
        config.allow_soft_placement = True  # what TF itself uses for functions
        config.graph_options.rewrite_options.memory_optimization = (
            rewriter_config_pb2.RewriterConfig.NO_MEM_OPT)
        config.graph_options.rewrite_options.disable_meta_optimizer = True
        context.context().function_call_options = context.FunctionCallOptions(
            config_proto=config)
    except (ImportError, AttributeError) as error:  # a TensorFlow without this internal API
        raise ValueError("--deterministic_ops cannot switch off Grappler in "
                         f"this TensorFlow {tf.__version__} ({error}); runs would not be "
                         "bit-identical.") from None


def deterministic_calls_active():
    """True when this thread's tf.function calls run without Grappler (what
    `make_deterministic` sets; some tf.config setters such as soft device
    placement reset it)."""
    # pylint: disable=import-outside-toplevel
    from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
    from tensorflow.python.eager import context
    serialized = context.context().function_call_options.config_proto_serialized
    config = config_pb2.ConfigProto.FromString(serialized)
    options = config.graph_options.rewrite_options
    return (options.memory_optimization == rewriter_config_pb2.RewriterConfig.NO_MEM_OPT
            and options.disable_meta_optimizer)


def configure_threads(intra_op=None, inter_op=None):
    """Sizes TensorFlow's two CPU thread pools (before TF initialises them).

    None keeps TensorFlow's choice (one thread per core in each pool).  A
    search step is thousands of small ops; on a small CPU several
    single-threaded processes finish more steps than one process using every
    core (README "Benchmark"), so parallel searches are run with
    ``intra_op=1``.
    """
    for name, value, setter in (
            ("intra_op", intra_op, tf.config.threading.set_intra_op_parallelism_threads),
            ("inter_op", inter_op, tf.config.threading.set_inter_op_parallelism_threads)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} threads must be a positive integer, got {value!r}.")
        try:
            setter(value)
        except RuntimeError as error:
            raise ValueError(f"cannot set {name} threads to {value}: TensorFlow is already "
                             f"initialised ({error}).") from None


def configure_cpu_devices(count):
    """Splits the CPU into `count` logical devices (before TF initialises them).

    Lets `mirrored` run several replicas on a CPU-only machine (tests, debugging).
    """
    if count <= 1:
        return
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
    except RuntimeError as error:
        raise ValueError(f"cannot split the CPU into {count} devices: TensorFlow's devices are "
                         f"already initialised ({error}).") from None


def _cluster_from_hosts(worker_hosts, task_index):
    hosts = [h.strip() for h in worker_hosts if h.strip()]
    if task_index is None or not 0 <= task_index < len(hosts):
        raise ValueError(f"--task_index must be in [0, {len(hosts)}) for --worker_hosts="
                         f"{','.join(hosts)}; got {task_index!r}.")
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": hosts},
                                          "task": {"type": "worker", "index": task_index}})


def build_strategy(name, *, num_gpus=0, tpu_address=None, worker_hosts=None, task_index=None):
    """Returns the tf.distribute strategy called `name`.

    Args:
      name: one of STRATEGIES.
      num_gpus: GPUs to use (0 = CPU).  Must not exceed the visible GPUs.
      tpu_address: TPU name or grpc address (tpu only; '' = local TPU VM).
      worker_hosts: list of "host:port" (multi_worker_mirrored; else TF_CONFIG).
      task_index: this worker's index in worker_hosts.
    """
    if name not in STRATEGIES:
        raise ValueError(f"distribution strategy must be one of {', '.join(STRATEGIES)}; "
                         f"got {name!r}.")
    if isinstance(num_gpus, bool) or not isinstance(num_gpus, int) or num_gpus < 0:
        raise ValueError(f"num_gpus must be an integer >= 0, got {num_gpus!r}.")
    visible = len(tf.config.list_physical_devices("GPU"))
    if num_gpus > visible:
        raise ValueError(f"--num_gpus={num_gpus} but only {visible} GPU(s) are visible.")
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if num_gpus else "/cpu:0")
    if name == "mirrored":
        if num_gpus:
            devices = [f"/gpu:{i}" for i in range(num_gpus)]
        else:
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker_mirrored":
        if worker_hosts:
            _cluster_from_hosts(worker_hosts, task_index)
        elif "TF_CONFIG" not in os.environ:
            raise ValueError("multi_worker_mirrored needs --worker_hosts and --task_index, or the "
                             "TF_CONFIG environment variable describing the cluster.")
        return tf.distribute.MultiWorkerMirroredStrategy()
    # TPU
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        raise ValueError(f"could not reach a TPU at --tpu={tpu_address!r}: "
                         f"{str(error).splitlines()[0] if str(error) else type(error).__name__}"
                         ) from None
    return tf.distribute.TPUStrategy(resolver)


def worker_id(strategy):
    """(task_type, task_id) of this process, ('worker', 0) when not multi-worker."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and resolver is not None:
        return resolver.task_type or "worker", int(resolver.task_id or 0)
    return "worker", 0


def is_chief(strategy):
    """True for the process that writes the run's files."""
    task_type, task_id = worker_id(strategy)
    return task_type == "chief" or (task_type == "worker" and task_id == 0)


def num_input_pipelines(strategy):
    """Input pipelines feeding the strategy: one per worker process."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and resolver is not None:
        spec = resolver.cluster_spec().as_dict()
        return max(len(spec.get("worker", [])) + len(spec.get("chief", [])), 1)
    return 1


def run_directory(strategy, model_dir):
    """Where this process writes: `model_dir` for the chief, else
    `model_dir/worker_<id>` (other workers' checkpoints must not collide)."""
    if not is_chief(strategy):
        model_dir = os.path.join(model_dir, "worker_%d" % worker_id(strategy)[1])
    os.makedirs(model_dir, exist_ok=True)
    return model_dir


def distributed_epoch(strategy, make_dataset, epoch, skip, steps_per_epoch):
    """The rest of an epoch's training pipeline, distributed over `strategy`.

    `make_dataset(epoch, input_context)` must give the same example order for
    the same epoch (our pipelines are pure functions of seed and epoch), so
    skipping the batches of the `skip` finished steps continues an
    interrupted epoch exactly.
    """
    remaining = steps_per_epoch - skip

    def dataset_fn(context):
        # A step takes replicas/pipelines per-replica batches from each pipeline.
        per_pipeline = max(context.num_replicas_in_sync // context.num_input_pipelines, 1)
        return make_dataset(epoch, context).skip(skip * per_pipeline).take(
            remaining * per_pipeline)

    return strategy.distribute_datasets_from_function(dataset_fn)
