"""Distribution and threading flags: the tf.distribute strategy, op threads and
log verbosity.

Library code never reads flags: trainers define these at import time and
turn the parsed values into config objects.
"""

from absl import flags as absl_flags

__all__ = ["define_thread_flags", "threads_from_flags", "define_distribution_flags",
           "strategy_from_flags", "quiet_logging"]


def define_thread_flags():
    """--intra_op_threads / --inter_op_threads: TensorFlow's CPU thread pools."""
    absl_flags.DEFINE_integer("intra_op_threads", None, "Threads one op may use (default: "
                              "TensorFlow's, every core). 1 for several runs side by side on a "
                              "small CPU (README 'Benchmark').", lower_bound=1)
    absl_flags.DEFINE_integer("inter_op_threads", None, "Ops run at once (default: "
                              "TensorFlow's, every core).", lower_bound=1)


def threads_from_flags(flag_values):
    """Applies the thread flags (before anything initialises TensorFlow)."""
    from datanas.engine.strategy import configure_threads  # pylint: disable=import-outside-toplevel

    configure_threads(flag_values.intra_op_threads, flag_values.inter_op_threads)


def define_distribution_flags():
    """tf.distribute strategy, checkpointing and determinism flags."""
    absl_flags.DEFINE_enum("distribution_strategy", "one_device",
                           ["one_device", "mirrored", "multi_worker_mirrored", "tpu"],
                           "How to distribute training.")
    absl_flags.DEFINE_integer("num_gpus", 0, "GPUs to use (0 = CPU).", lower_bound=0)
    absl_flags.DEFINE_integer("num_cpu_devices", 1, "Split the CPU into this many logical "
                              "devices (lets 'mirrored' run several replicas on a CPU).",
                              lower_bound=1)
    absl_flags.DEFINE_string("tpu", None, "TPU name or grpc:// address ('' = local TPU VM).")
    absl_flags.DEFINE_list("worker_hosts", None, "host:port of every worker "
                           "(multi_worker_mirrored; alternatively set TF_CONFIG).")
    absl_flags.DEFINE_integer("task_index", None, "This worker's index in --worker_hosts.",
                              lower_bound=0)
    define_thread_flags()
    absl_flags.DEFINE_integer("checkpoint_every_steps", 200, "Also checkpoint every N steps "
                              "(0 = only at epoch ends).", lower_bound=0)
    absl_flags.DEFINE_boolean("deterministic_ops", False, "Reproducible reruns and resumes: "
                              "TensorFlow op determinism and no Grappler graph rewrites "
                              "(README 'Reproducibility').")
    absl_flags.DEFINE_string("dtype_policy", "float32", "Keras dtype policy: 'float32', or "
                             "'mixed_bfloat16' (bfloat16 compute, float32 variables; for TPUs "
                             "and Ampere or newer GPUs, slower on most CPUs). 'mixed_float16' "
                             "is refused: the train steps do not scale the loss.")


def strategy_from_flags(flag_values):
    """Sets the dtype policy and builds the strategy the distribution flags
    ask for (after parsing)."""
    # pylint: disable=import-outside-toplevel
    from datanas.core.precision import set_dtype_policy
    from datanas.engine.strategy import (build_strategy, configure_cpu_devices,
                                         make_deterministic)

    set_dtype_policy(flag_values.dtype_policy)  # before any model or variable is built
    threads_from_flags(flag_values)
    configure_cpu_devices(flag_values.num_cpu_devices)
    strategy = build_strategy(flag_values.distribution_strategy, num_gpus=flag_values.num_gpus,
                              tpu_address=flag_values.tpu, worker_hosts=flag_values.worker_hosts,
                              task_index=flag_values.task_index)
    if flag_values.deterministic_ops:
        make_deterministic()  # after the strategy: its setup may reset function-call options
    return strategy


def quiet_logging(flag_values):
    """absl logs warnings and errors only, unless --verbosity was given."""
    from absl import logging  # pylint: disable=import-outside-toplevel
    if not flag_values["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
