"""A run directory is resumed exactly, reported, or refused -- never mixed.

A run's *identity* is every setting that changes its result (data and
splits, batch size, model, search or training settings, seed, the format of
these files), written once as ``run_identity.json`` when the run starts.
``plan_run`` decides, before anything is written or built:

* ``new``: the directory is missing or empty -- the identity is written;
* ``resume``: same identity, not finished -- continue from the checkpoint;
* ``finished``: same identity and the result file exists -- report it and
  write nothing;
* ``extend``: only the budget (``epochs``) grew and the caller asked to
  extend -- earlier result files are kept under ``<name>.attempt-<n>.<ext>``
  and the identity records the earlier budgets (``extended_from``): an
  extended run is not a fresh run of its final budget (its first epochs ran
  under the earlier budget's schedules), so only a command that extends
  (``extend=True``) resumes it or reads it back;
* otherwise ``RunRefused`` with one line naming each differing setting and
  its two values (or why the directory cannot be used).

Output paths are checked up front (``check_output_dir``): an existing file,
a directory that cannot be written, or a path inside another run's
directory is refused by name.  An export directory (``check_export_dir``)
is also refused where it already holds files or is another run's
directory: an export is never replaced (an extension keeps its run's
earlier export under an attempt name, ``begin_run``; a run killed between
its export and its result file finds its own export by EXPORT_RECORD and
keeps it so when it goes on).
"""

import hashlib
import json
import os
import tempfile

from datanas.engine.run_files import read_json, write_json_atomic
from datanas.engine.run_lock import LOCK_FILE, acquire_run_lock

__all__ = ["IDENTITY_FILE", "EXPORT_RECORD", "export_record", "FORMAT_VERSION", "RunRefused",
           "RunPlan", "check_output_dir",
           "run_root", "check_export_dir", "plan_run", "begin_run", "identity_differences",
           "ADDED_SETTINGS", "EXTENDED_FROM", "attempt_name"]

IDENTITY_FILE = "run_identity.json"
#: Written into every export (export_saved_model): the run directory and the
#: identity of the run that wrote it, so that the same run, resumed after a
#: kill between its export and its result file, may export there again.
EXPORT_RECORD = "datanas_export.json"
#: Key of an extended run's identity: [{budget key: earlier value}], one
#: entry per extension, oldest first.
EXTENDED_FROM = "extended_from"
#: Version of the run-directory format (checkpoint layout, file names).
FORMAT_VERSION = 2

#: Settings added after run directories already existed, by name, with the
#: value every older run used; they hold wherever the name is the last part
#: of a flattened key (a trainer's ``settings.<name>``, the ablation runner's
#: ``search.<name>``).  An identity without the key counts as that value, so
#: an older run resumes or is read back only by a command that asks for what
#: it ran.  EGS supernets before these settings skipped undrawn ops
#: ("sampled") and added an edge's selected ops ("sum").
ADDED_SETTINGS = {"egs_gradient": "sampled", "edge_combine": "sum"}


class RunRefused(ValueError):
    """The run directory cannot be used for this command (one-line reason)."""


class RunPlan:
    """What to do with a run directory (see the module docstring)."""

    def __init__(self, status, model_dir, identity, previous=None, replan=None):
        self.status, self.model_dir = status, model_dir
        self.identity, self.previous = identity, previous
        # plan_run's arguments, so begin_run can check under the lock that
        # the directory is still what was planned.
        self.replan = replan

    def __repr__(self):
        return f"RunPlan({self.status!r}, {self.model_dir!r})"


def _flatten(value, prefix=""):
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def _normalise(identity):
    # Through JSON, so tuples and lists (and numpy scalars) compare alike.
    return json.loads(json.dumps(identity, default=str))


def identity_differences(saved, current, added_defaults=None, ignored=(), ignored_names=()):
    """[(key, saved value, current value)] of every differing setting.

    `added_defaults`: {flattened key: value} of settings introduced after
    `saved` was written; a key missing from `saved` counts as that value
    (so do keys ending in a name of ADDED_SETTINGS).
    `ignored`: flattened keys that do not change a result (e.g. a name shown
    in tables) and are not compared.
    `ignored_names`: setting names not compared wherever they sit (a key
    with one of them among its dotted parts: runtime state such as a
    layer's name or the current temperature).
    """
    before, now = _flatten(_normalise(saved)), _flatten(_normalise(current))
    for key, value in _normalise(added_defaults or {}).items():
        if key in now:
            before.setdefault(key, value)
    for key in now:
        name = key.rsplit(".", 1)[-1]
        if name in ADDED_SETTINGS:
            before.setdefault(key, ADDED_SETTINGS[name])
    skipped = set(ignored_names)
    return [(key, before.get(key), now.get(key)) for key in sorted(set(before) | set(now))
            if key not in ignored and not skipped.intersection(key.split("."))
            and before.get(key) != now.get(key)]


def _writable(directory):
    if not os.access(directory, os.W_OK | os.X_OK):
        return False
    try:   # access() says yes to root even where the file system refuses
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError:
        return False
    return True


def run_root(path, include_self=False):
    """The nearest directory above `path` holding a run identity, or None
    (`path` itself counts only with `include_self`)."""
    directory = os.path.abspath(path)
    directory = directory if include_self else os.path.dirname(directory)
    while True:
        if os.path.isfile(os.path.join(directory, IDENTITY_FILE)):
            return directory
        up = os.path.dirname(directory)
        if up == directory:
            return None
        directory = up



def check_output_dir(path, flag="--model_dir", allow_inside=None):
    """Refuses an output directory that is a file, unwritable, or inside another run.

    Args:
      path: the directory (need not exist).
      flag: the name used in the message.
      allow_inside: a run directory `path` may lie in (e.g. an export into
        the run's own directory).
    """
    if not path:
        raise RunRefused(f"{flag} must be a directory path, got {path!r}.")
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise RunRefused(f"{flag}={path} is an existing file; give a directory (made if "
                         "missing).")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not _writable(existing):
        raise RunRefused(f"{flag}={path}: {existing} is not a writable directory.")
    root = run_root(path)
    if root is not None and (allow_inside is None
                             or os.path.abspath(allow_inside) != root):
        raise RunRefused(f"{flag}={path} lies inside the run directory {root}; use a directory "
                         "outside other runs.")
    return path


def _shown(entries):
    return ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")


def _inside(path, directory):
    """True when `path` is `directory` or lies in it (absolute paths)."""
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def check_export_dir(path, model_dir, *, status="new", earlier_export=None, identity=None,
                     flag="--export_dir"):
    """Refuses an export directory that would replace or mix with other files.

    Accepted: a missing or empty directory, outside other runs (inside
    `model_dir`, the run's own directory, is fine).  Refused, by name: a
    file or unwritable path (check_output_dir); another run's directory
    (one holding ``run_identity.json``) or a path inside one; `model_dir`
    itself or a directory holding it; a directory that already holds
    files -- unless `status` is ``extend`` and it is `earlier_export`, the
    export the extended run wrote (begin_run keeps it under an attempt name),
    or `status` is ``resume`` or ``extend`` and its EXPORT_RECORD names
    `model_dir` and `identity` (the saved identity of the run going on): the
    same run, killed between its export and its result file
    (export_saved_model keeps that export under an attempt name and exports
    again).

    Returns the absolute path.
    """
    path = check_output_dir(path, flag, allow_inside=model_dir)
    own = os.path.abspath(model_dir)
    if path == own:
        raise RunRefused(f"{flag}={path} is the run's --model_dir: the export would mix with "
                         "the run's files; export into a directory of its own, e.g. "
                         f"{os.path.join(path, 'saved_model')} (nothing was changed).")
    if os.path.isfile(os.path.join(path, IDENTITY_FILE)):
        raise RunRefused(f"{flag}={path} is the run directory of another run ({IDENTITY_FILE}); "
                         "export into a new directory, e.g. "
                         f"{os.path.join(own, 'saved_model')} (nothing was changed).")
    if _inside(own, path):
        raise RunRefused(f"{flag}={path} holds the run directory {own}: the export would mix "
                         f"with the run's files; export into a directory of its own, e.g. "
                         f"{os.path.join(own, 'saved_model')} (nothing was changed).")
    entries = sorted(os.listdir(path)) if os.path.isdir(path) else []
    if entries:
        if status == "extend" and earlier_export and os.path.abspath(earlier_export) == path:
            return path
        if status in ("resume", "extend") and identity is not None and _exported_by(
                path, own, identity):
            return path   # killed before its result file; export_saved_model keeps it
        raise RunRefused(f"{flag}={path} already holds files ({_shown(entries)}): an export is "
                         "never replaced; move it away or choose another --export_dir (nothing "
                         "was changed).")
    return path


def export_record(model_dir, identity):
    """What an export records of the run that wrote it (EXPORT_RECORD):
    digests of the run directory's real path and of its identity, so that
    the run is recognised without the export carrying local paths or
    settings."""
    def digest(text):
        return hashlib.sha256(text.encode("utf-8")).hexdigest()
    return {"run_directory_sha256": digest(os.path.realpath(model_dir)),
            "identity_sha256": digest(json.dumps(identity, sort_keys=True))}


def _exported_by(path, model_dir, identity):
    """Whether the export in `path` records run `model_dir` of `identity`."""
    record = os.path.join(path, EXPORT_RECORD)
    if not os.path.isfile(record):
        return False
    try:
        with open(record) as handle:
            written = json.load(handle)
    except (OSError, ValueError):
        return False
    return written == export_record(model_dir, identity)


def plan_run(model_dir, identity, *, result_file, extend=False, budget_keys=("epochs",),
             added_defaults=None, ignored=()):
    """Decides what to do with `model_dir` for a run of `identity` (nothing written).

    Args:
      model_dir: the run directory.
      identity: JSON-ready dict of every result-changing setting.
      result_file: file name whose presence marks a finished run.
      extend: allow a larger budget (keys in `budget_keys`) than the
        finished or interrupted run's (the new identity records the earlier
        budget under EXTENDED_FROM); a run extended earlier is resumed or
        reported only with `extend`.
      added_defaults: {flattened key ("settings.<name>"): value} of settings
        added after older run directories were written, with the value those
        runs used: a directory without the key still resumes.
      ignored: flattened keys not compared (see identity_differences).
    Raises:
      RunRefused: naming each difference, or why the directory is unusable.
    """
    replan = dict(result_file=result_file, extend=extend, budget_keys=budget_keys,
                  added_defaults=added_defaults, ignored=ignored)
    model_dir = check_output_dir(model_dir)
    identity = _normalise(identity)
    # worker_<id>/ directories of a multi-worker run may appear before the chief
    # plans; a lock file alone is a run killed before it wrote its identity.
    entries = sorted(e for e in (os.listdir(model_dir) if os.path.isdir(model_dir) else [])
                     if not e.startswith("worker_") and e != LOCK_FILE)
    path = os.path.join(model_dir, IDENTITY_FILE)
    if not entries:
        return RunPlan("new", model_dir, identity, replan=replan)
    if not os.path.isfile(path):
        raise RunRefused(f"{model_dir} already holds files ({_shown(entries)}) but no "
                         f"{IDENTITY_FILE}: not a run of this datanas version; use a new "
                         "--model_dir (nothing was changed).")
    saved = read_json(path)   # a damaged file: one line naming it
    extended = list(saved.get(EXTENDED_FROM) or []) if isinstance(saved, dict) else []
    compared = ({k: v for k, v in saved.items() if k != EXTENDED_FROM}
                if isinstance(saved, dict) else saved)
    differences = identity_differences(compared, identity, added_defaults, ignored)
    budget = [d for d in differences if d[0].rsplit(".", 1)[-1] in budget_keys]
    others = [d for d in differences if d not in budget]
    if others:
        raise RunRefused(f"{model_dir} holds a different run: " + "; ".join(
            f"{key}: run {old!r}, now {new!r}" for key, old, new in others)
            + ". Use a new --model_dir, or the run's own settings (its flagfile.txt) to "
            "resume it.")
    if budget:
        grown = all(isinstance(new, (int, float)) and isinstance(old, (int, float)) and new > old
                    for _, old, new in budget)
        described = "; ".join(f"{key}: run {old!r}, now {new!r}" for key, old, new in budget)
        if not extend or not grown:
            raise RunRefused(f"{model_dir} holds a run with another budget ({described}). "
                             + ("Pass --extend_run to continue it to the larger budget (its "
                                "earlier results are kept)." if grown else
                                "A budget can only grow; use a new --model_dir."))
        earlier = dict(sorted((key, old) for key, old, _ in budget))
        return RunPlan("extend", model_dir, {**identity, EXTENDED_FROM: extended + [earlier]},
                       previous=saved, replan=replan)
    if extended:
        if not extend:
            raise RunRefused(
                f"{model_dir} holds a run extended with --extend_run from "
                f"{_extensions(extended)}: its first epochs ran under the earlier budget's "
                "schedules, so it is not a fresh run of these settings. Add --extend_run to "
                "resume or read it back, or use a new --model_dir (nothing was changed).")
        identity = {**identity, EXTENDED_FROM: extended}
    if os.path.exists(os.path.join(model_dir, result_file)):
        return RunPlan("finished", model_dir, identity, previous=saved, replan=replan)
    return RunPlan("resume", model_dir, identity, previous=saved, replan=replan)


def _extensions(extended):
    """'epochs 1' / 'epochs 1, then 2': the earlier budgets of EXTENDED_FROM."""
    names = {}
    for earlier in extended:
        for key, value in (earlier.items() if isinstance(earlier, dict) else []):
            names.setdefault(key.rsplit(".", 1)[-1], []).append(str(value))
    return "; ".join(f"{name} {', then '.join(values)}" for name, values in names.items())


def attempt_name(directory, name, *, keep_extension=True):
    """``<stem>.attempt-<n><ext>``: the first name not taken in `directory`
    under which an earlier `name` is kept (`keep_extension` False: the
    whole name is the stem, as for a directory: ``saved_model.attempt-1``)."""
    stem, ext = os.path.splitext(name) if keep_extension else (name, "")
    number = 1
    while os.path.lexists(os.path.join(directory, f"{stem}.attempt-{number}{ext}")):
        number += 1
    return f"{stem}.attempt-{number}{ext}"


_attempt_name = attempt_name


def keep_as_attempt(path, *, keep_extension=True):
    """Renames `path` to its attempt name beside it (attempt_name) and
    returns the new path."""
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    target = os.path.join(parent, attempt_name(parent, os.path.basename(path),
                                               keep_extension=keep_extension))
    os.replace(path, target)
    return target


def begin_run(plan, *, result_files=(), earlier_export=None):
    """Carries out a plan: makes this process the directory's only writer
    (``run_lock``; RunLocked if another live process is); writes the
    identity of a new run; for an extension, keeps the earlier
    `result_files` -- and `earlier_export`, the export directory the
    extended run wrote, wherever it lies -- under attempt names and records
    the new budget.  A ``finished`` run is only read: nothing is locked or
    written.

    A plan made by plan_run is checked again once the lock is held (a
    process that finished or began the run in between): RunRefused if the
    directory changed, with nothing written."""
    if plan.status == "finished":
        return plan
    os.makedirs(plan.model_dir, exist_ok=True)
    acquire_run_lock(plan.model_dir)
    if plan.replan is not None:
        now = plan_run(plan.model_dir, _without_extension(plan.identity), **plan.replan)
        if now.status != plan.status or now.identity != plan.identity:
            raise RunRefused(f"{plan.model_dir} changed while this command started (it is "
                             f"now {now.status!r}, not {plan.status!r}); rerun the command.")
    if plan.status == "new":
        write_json_atomic(os.path.join(plan.model_dir, IDENTITY_FILE), plan.identity)
    elif plan.status == "extend":
        # The export first: an extension killed after it is planned again
        # as an extension, and finds no earlier export to keep.
        if earlier_export and os.path.isdir(earlier_export) and os.listdir(earlier_export):
            keep_as_attempt(earlier_export, keep_extension=False)
        for name in result_files:
            source = os.path.join(plan.model_dir, name)
            if os.path.exists(source):
                os.replace(source, os.path.join(plan.model_dir,
                                                attempt_name(plan.model_dir, name)))
        write_json_atomic(os.path.join(plan.model_dir, IDENTITY_FILE), plan.identity)
    return plan


def _without_extension(identity):
    return {k: v for k, v in identity.items() if k != EXTENDED_FROM}
