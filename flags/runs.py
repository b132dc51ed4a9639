"""The run lifecycle of every trainer: --model_dir/--seed/--extend_run, the run
identity (which flags change a result), planning a run directory before
anything is written, the flag files, and the one-line ends of a run.

Library code never reads flags: trainers define these at import time and
turn the parsed values into config objects.
"""

import contextlib
import os
import sys

from absl import flags as absl_flags

from datanas.searching import run as search_run
from datanas.training import export
from flags.search import EGS_FLAGS

__all__ = ["define_run_flags", "TRAIN_RESULT_FILE", "TRAIN_RESULT_FILES", "NOT_IDENTITY",
           "ADDED_WITH_DEFAULT", "added_defaults", "trainer_flag_values", "FLAG_FILES",
           "write_flags", "run_identity", "PreparedRun", "prepare_run", "SEARCH_RESULT_FILE",
           "SEARCH_RESULT_FILES", "prepare_search_run", "prepare_training_run", "run_errors"]


def define_run_flags():
    """--model_dir, --seed and --extend_run."""
    absl_flags.DEFINE_string("model_dir", None,
                             "Directory for checkpoints, metrics, TensorBoard and results. An "
                             "existing run there is resumed (same settings), reported (finished) "
                             "or refused (other settings); nothing is overwritten.")
    absl_flags.DEFINE_integer("seed", 0, "Seed of every random draw of the run.", lower_bound=0)
    absl_flags.DEFINE_boolean("extend_run", False, "Continue a run in --model_dir to a larger "
                              "--epochs; its earlier result files are kept as "
                              "<name>.attempt-<n>.json.")
    absl_flags.mark_flag_as_required("model_dir")


#: Result files of a training run and of a search run: the library's own
#: lists (the files kept under attempt names when a finished run is extended).
TRAIN_RESULT_FILE, TRAIN_RESULT_FILES = export.TRAIN_RESULT_FILE, export.TRAIN_RESULT_FILES
SEARCH_RESULT_FILE = search_run.SEARCH_RESULT_FILE
SEARCH_RESULT_FILES = search_run.search_result_files()


#: Flags that do not change a run's result (where it is written, how it is
#: distributed or checkpointed); everything else is part of its identity.
NOT_IDENTITY = ("model_dir", "data_dir", "export_dir", "extend_run", "preset",
                "checkpoint_every_steps", "distribution_strategy", "num_gpus", "num_cpu_devices",
                "tpu", "worker_hosts", "task_index", "deterministic_ops", "intra_op_threads",
                "inter_op_threads")


#: Result-changing flags added after run directories already existed, with
#: the value every older run used: a run directory whose identity lacks one
#: resumes when the flag has that value.
ADDED_WITH_DEFAULT = {"dtype_policy": "float32", "random_candidates": 8, "random_epochs": None,
                      "image_size": None}
# egs_gradient / edge_combine, added later, are
# datanas.engine.run_identity.ADDED_SETTINGS (they also hold in the ablation
# runner's identities): an older run counts as egs_gradient=sampled,
# edge_combine=sum.


def added_defaults():
    """ADDED_WITH_DEFAULT as `plan_run(added_defaults=...)` takes it: keyed by
    the setting's path in a run identity."""
    return {f"settings.{k}": v for k, v in ADDED_WITH_DEFAULT.items()}


def trainer_flag_values(flag_values):
    """{name: value} of the trainer's own and datanas' flags (not absl/TF's)."""
    values = {}
    for module, module_flags in flag_values.flags_by_module_dict().items():
        # The trainer's own flags are registered under its file path (run as
        # __main__); library flags (absl logging, TF) are left out.
        if not module.startswith(("absl", "tensorflow", "tensorboard", "keras")):
            values.update({f.name: f.value for f in module_flags})
    return values


def _flagfile_line(name, value):
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no{name}"
    if isinstance(value, (list, tuple)):
        return f"--{name}=" + ",".join(str(v) for v in value)
    return f"--{name}={value}"


#: The files write_flags writes (kept under attempt names when a run is extended).
FLAG_FILES = ("flags.json", "flagfile.txt")


def write_flags(flag_values, model_dir, prefix="", *, extended=False):
    """Writes the run's flags as JSON and as a flagfile that reproduces them
    (``--flagfile=<model_dir>/flagfile.txt``: lists comma-separated, booleans
    as --name/--noname).  `extended`: the run was extended (--extend_run),
    which only a command with --extend_run reads back, so the flagfile has
    it; otherwise --extend_run, a one-off request, is left out."""
    from datanas.engine.run_files import (  # pylint: disable=import-outside-toplevel
        write_json_atomic, write_text_atomic)

    values = trainer_flag_values(flag_values)
    flags_json, flagfile = FLAG_FILES
    write_json_atomic(os.path.join(model_dir, prefix + flags_json), dict(sorted(values.items())))
    lines = [_flagfile_line(name, value) for name, value in sorted(values.items())
             if value is not None and name != "extend_run"]
    if extended:
        lines.append("--extend_run")
    write_text_atomic(os.path.join(model_dir, prefix + flagfile), "\n".join(lines) + "\n")


def run_identity(flag_values, trainer, inputs):
    """Every result-changing setting of this command (see NOT_IDENTITY), and
    what it reads (`inputs`: dataset name and split sizes, a genotype...)."""
    # pylint: disable=import-outside-toplevel
    from datanas.engine.run_identity import FORMAT_VERSION

    settings = {k: v for k, v in sorted(trainer_flag_values(flag_values).items())
                if k not in NOT_IDENTITY}
    # pylint: disable=import-outside-toplevel
    from datanas.searching.methods import EGS_METHODS, SEARCH_METHODS, method_temperatures
    method = settings.get("method")
    if method in SEARCH_METHODS and "initial_temperature" in settings:
        # The temperatures the run anneals: unset ones are the method's
        # (runs before the method chose them recorded 5 -> 1 for every method).
        settings["initial_temperature"], settings["final_temperature"] = method_temperatures(
            method, settings["initial_temperature"], settings["final_temperature"])
    if method is not None and method not in EGS_METHODS:
        # They shape EGS codes only: a darts or random run (refused with
        # them) is the same run as before they existed.
        for name in EGS_FLAGS:
            settings.pop(name, None)
    return {"format": FORMAT_VERSION, "trainer": trainer, "settings": settings, "inputs": inputs}


class PreparedRun:
    """What prepare_run decided.  `finished`: the run had finished with
    these settings and its result was printed (the caller stops).  Else the
    caller builds its model -- whatever that checks is checked before the
    run directory is touched -- then calls `begin()`, which locks the
    directory and writes the identity and the flag files (a new or extended
    run), keeping an extended run's earlier files under attempt names."""

    def __init__(self, finished=False, begin=None):
        self.finished = finished
        self._begin = begin

    def begin(self):
        """Writes what the plan calls for (once; nothing for a non-chief
        worker).  Raises RunRefused / RunLocked (one line)."""
        begin, self._begin = self._begin, None
        if begin is not None:
            begin()


def prepare_run(flag_values, *, trainer, inputs, result_file, result_files, strategy):
    """Plans the run in --model_dir before anything is built or written.

    Returns a PreparedRun: ``finished`` when the run already finished with
    these settings (its result is printed; the caller stops); else, after
    seeding Python, NumPy and Keras with --seed for the run that goes ahead,
    one whose ``begin()`` the caller calls once its model is built: nothing
    is written before then, so a setting refused while building leaves no
    trace.  Non-chief workers of a multi-worker run skip the plan (they
    write into the chief's run directory, under worker_<id>).

    --export_dir is checked here too (check_export_dir): it may not hold
    files (an export is never replaced) nor be, or lie in, another run's
    directory; an extension (--extend_run) into the export its run wrote,
    or a run that goes on after a kill between its export and its result
    file, keeps that export under an attempt name.

    Raises:
      RunRefused: the directory cannot be used; one line naming why.
    """
    # pylint: disable=import-outside-toplevel
    from datanas.engine.run_identity import (EXTENDED_FROM, begin_run, check_export_dir,
                                             check_output_dir, plan_run)
    from datanas.engine.strategy import is_chief

    export_dir = flag_values["export_dir"].value if "export_dir" in flag_values else None
    if export_dir:
        check_output_dir(export_dir, "--export_dir", allow_inside=flag_values.model_dir)
    if not is_chief(strategy):
        _seed(flag_values)
        return PreparedRun()
    plan = plan_run(flag_values.model_dir, run_identity(flag_values, trainer, inputs),
                    result_file=result_file, extend=flag_values.extend_run,
                    added_defaults=added_defaults())
    if plan.status == "finished":
        _report_finished(plan, result_file)
        return PreparedRun(finished=True)
    earlier_export = None
    if export_dir:
        if plan.status == "extend":
            earlier_export = _recorded_export(plan, result_file)
        check_export_dir(export_dir, flag_values.model_dir, status=plan.status,
                         earlier_export=earlier_export, identity=plan.previous)

    def begin():
        begin_run(plan, result_files=(*result_files, *FLAG_FILES), earlier_export=earlier_export)
        if plan.status in ("new", "extend") or not os.path.exists(
                os.path.join(flag_values.model_dir, FLAG_FILES[0])):   # killed before them
            write_flags(flag_values, flag_values.model_dir,
                        extended=EXTENDED_FROM in plan.identity)

    _seed(flag_values)
    return PreparedRun(begin=begin)


def _recorded_export(plan, result_file):
    """The export directory the run in `plan` wrote, as its result file
    records it (None: none recorded, or no result yet)."""
    # pylint: disable=import-outside-toplevel
    from datanas.engine.run_files import read_json

    path = os.path.join(plan.model_dir, result_file)
    if not os.path.isfile(path):
        return None
    recorded = read_json(path)
    return recorded.get("export_dir") if isinstance(recorded, dict) else None


def prepare_search_run(flag_values, *, trainer, inputs, strategy):
    """prepare_run for the search trainers (search_result.json, genotypes)."""
    return prepare_run(flag_values, trainer=trainer, inputs=inputs, strategy=strategy,
                       result_file=SEARCH_RESULT_FILE, result_files=SEARCH_RESULT_FILES)


def prepare_training_run(flag_values, *, trainer, inputs, strategy):
    """prepare_run for the evaluation trainers (results.json, model.keras)."""
    return prepare_run(flag_values, trainer=trainer, inputs=inputs, strategy=strategy,
                       result_file=TRAIN_RESULT_FILE, result_files=TRAIN_RESULT_FILES)


def _seed(flag_values):
    import keras  # pylint: disable=import-outside-toplevel
    keras.utils.set_random_seed(flag_values.seed)


@contextlib.contextmanager
def run_errors(trainer):
    """Ends a run the way a cluster expects: preemption -> message + exit 143;
    a diverged run or a mismatching checkpoint -> one error line."""
    # pylint: disable=import-outside-toplevel
    from datanas.engine.checkpoints import CheckpointMismatchError
    from datanas.engine.loop import NonFiniteError, RunPreempted
    from datanas.engine.run_files import RunFileDamaged, RunWriteFailed

    try:
        yield
    except RunPreempted as preempted:
        print(str(preempted), flush=True)
        sys.exit(143)
    except (NonFiniteError, CheckpointMismatchError, RunFileDamaged, RunWriteFailed) as error:
        sys.exit(f"{trainer}: error: {error}")


def _report_finished(plan, result_file):
    """Prints what a finished run's result file says (nothing is written)."""
    # pylint: disable=import-outside-toplevel
    from datanas.engine.run_files import RunFileDamaged, read_json

    path = os.path.join(plan.model_dir, result_file)
    try:
        result = read_json(path)
    except RunFileDamaged as damaged:   # one line naming it, and the way out
        raise RunFileDamaged(f"{damaged} Move it away and rerun the same command: the run's "
                             "last checkpoint writes it again.") from None
    print(f"The run in {plan.model_dir} already finished with these settings; nothing was "
          f"changed. Result ({path}):", flush=True)
    for key, value in result.items():
        if not isinstance(value, (dict, list)):
            print(f"  {key}: {value}", flush=True)
