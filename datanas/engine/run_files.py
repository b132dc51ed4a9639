"""Small helpers for the files a run writes into its --model_dir.

Every JSON file is strict JSON: a non-finite float (NaN, +-inf: a diverged
loss, an overflowing perplexity) is written as ``null`` (``json_text``), never
as the ``NaN``/``Infinity`` that Python's json module would write and strict
readers (JavaScript, jq, most other languages) refuse.

A write that fails (a full disk, a quota, a read-only file system) raises
``RunWriteFailed``: one line naming the file, why, and that the file and
the run's last complete checkpoint are intact (the writers are atomic, an
append that fails is cut back).
"""

import errno
import json
import math
import os
import re
import sys
import tempfile

__all__ = ["write_json_atomic", "write_text_atomic", "write_file_atomic", "append_jsonl",
           "read_jsonl", "read_json", "json_text", "finite_json", "cut_torn_tail", "set_aside",
           "last_checkpoint", "write_failed", "write_errors", "RunFileDamaged",
           "RunWriteFailed"]


class RunFileDamaged(ValueError):
    """A file of a run directory cannot be read (one line naming it and what
    happened); nothing was changed that the message does not name."""


class RunWriteFailed(ValueError):
    """A file or checkpoint of a run could not be written (a full disk...):
    one line naming it, why, and the last complete checkpoint, which is
    intact.  A ValueError like RunFileDamaged, so that a trainer's one-line
    refusal of bad settings prints it too when it happens before the run
    starts (its flag and identity files)."""


def write_errors():
    """What a failed write raises: OSError, and TensorFlow's OpError (its
    file system layer: checkpoints, gfile) once TensorFlow is imported."""
    errors = getattr(sys.modules.get("tensorflow"), "errors", None)
    op_error = getattr(errors, "OpError", None)
    return (OSError,) if op_error is None else (OSError, op_error)


_LISTED = re.compile(r'^model_checkpoint_path:\s*"(.*)"\s*$', re.M)


def last_checkpoint(directory):
    """The newest checkpoint listed in `directory` (a CheckpointManager's
    folder) or in its ``checkpoints/`` folder (a run directory), as a path;
    None when none is listed or the list cannot be read."""
    for folder in (directory, os.path.join(directory, "checkpoints")):
        try:
            with open(os.path.join(folder, "checkpoint"), encoding="utf-8") as handle:
                match = _LISTED.search(handle.read())
        except (OSError, ValueError):
            continue
        if match:
            return os.path.join(folder, match.group(1))   # an absolute path stays as is
    return None


def _reason(error):
    """'No space left on device' of an OSError or a TensorFlow OpError."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(getattr(error, "message", None) or error).strip()
    line = (text.splitlines() or [type(error).__name__])[0]
    line = re.sub(r"^\{\{[^}]*\}\}\s*", "", line)      # TensorFlow's function-node tag
    line = re.sub(r"\s*\[Op:\w+\]$", "", line)          # ... and its op name
    line = line.rsplit("; ", 1)[-1] if "; " in line else line   # "<temp file>; <reason>"
    return line if len(line) <= 160 else line[:160] + "..."


def _disk_full(error):
    return (getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
            or type(error).__name__ == "ResourceExhaustedError"
            or "No space left" in str(error))


_LOOK_UP = object()


def write_failed(what, error, checkpoint=_LOOK_UP, unchanged=True):
    """The RunWriteFailed for writing `what` (a file's path, or e.g.
    "checkpoint <prefix>") that raised `error`.

    Args:
      checkpoint: the run's last complete checkpoint, None for none
        (default: the one listed beside the file `what`, if any).
      unchanged: the file `what` was left as it was (atomic writers).
    """
    if checkpoint is _LOOK_UP:
        checkpoint = last_checkpoint(os.path.dirname(os.path.abspath(str(what))))
    fix = "free space" if _disk_full(error) else "fix that"
    intact = ["it is unchanged"] if unchanged else []
    if checkpoint:
        intact.append(f"the last complete checkpoint, {checkpoint}, is intact")
    elif not unchanged:
        intact.append("no earlier checkpoint exists")
    return RunWriteFailed(f"could not write {what} ({_reason(error)}); " + " and ".join(intact)
                          + f": {fix} and rerun the same command"
                          + (" to resume." if checkpoint else "."))


def finite_json(obj):
    """`obj` with every non-finite float (NaN, +-inf) in it, at any depth of
    dicts, lists and tuples, replaced by None (JSON null)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: finite_json(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(value) for value in obj]
    return obj


def json_text(obj, **kwargs):
    """Strict JSON of `obj` (json.dumps' keywords): non-finite floats are null."""
    return json.dumps(finite_json(obj), allow_nan=False, **kwargs)


def set_aside(path, suffix=".damaged"):
    """Renames `path` to `path + suffix` (or ``<suffix>-<n>`` where that is
    taken) and returns the new path: damaged files are kept, never deleted."""
    target, number = path + suffix, 2
    while os.path.lexists(target):
        target, number = f"{path}{suffix}-{number}", number + 1
    os.rename(path, target)
    return target


def _file_mode():
    # mkstemp creates files readable by the owner only; result files should
    # be as readable as any file this process writes (0666 minus the umask).
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_file_atomic(path, write):
    """Calls `write(temporary_path)` (a file beside `path` with the same
    ending, e.g. ``.tmp-<random>.keras``), then renames it to `path`: a kill
    or a failed write never leaves a half-written `path`.

    Raises:
      RunWriteFailed: the write failed (OSError or TensorFlow's OpError,
        e.g. a full disk); `path` is unchanged, the temporary file removed.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-",
                                   suffix=os.path.splitext(path)[1])
        os.close(fd)
        write(tmp)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException as error:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(error, write_errors()):
            raise write_failed(path, error) from None
        raise


def write_text_atomic(path, text):
    """Writes a text file so that a kill never leaves a half-written file
    (RunWriteFailed when the write fails: see write_file_atomic)."""
    def write(tmp):
        with open(tmp, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    write_file_atomic(path, write)


def write_json_atomic(path, obj):
    """Writes strict JSON atomically (non-finite floats as null; see
    json_text and write_text_atomic)."""
    write_text_atomic(path, json_text(obj, indent=2, sort_keys=False) + "\n")


def append_jsonl(path, record):
    """Appends one strict-JSON record as a line (metrics history).

    Raises:
      RunWriteFailed: the append failed (e.g. a full disk); the file is cut
        back to what it held before (a kill instead leaves a torn last line,
        see cut_torn_tail).
    """
    line = json_text(record) + "\n"
    size = os.path.getsize(path) if os.path.exists(path) else None
    try:
        with open(path, "a") as handle:
            handle.write(line)
    except OSError as error:
        try:
            if size is None:
                os.unlink(path)
            else:
                os.truncate(path, size)
        except OSError:
            pass   # a torn last line is cut off when the run resumes
        raise write_failed(path, error) from None


def read_json(path):
    """The JSON object in `path`; a damaged file (e.g. truncated) raises
    RunFileDamaged naming it."""
    try:
        with open(path, "rb") as handle:
            return json.loads(handle.read())
    except ValueError as error:   # JSONDecodeError, UnicodeDecodeError
        raise RunFileDamaged(f"{path} is damaged (not complete JSON: "
                             f"{str(error).splitlines()[0]}); nothing was changed.") from None


def read_jsonl(path):
    """The records of a JSON-lines file ([] if there is none); a line that is
    not JSON raises RunFileDamaged naming the file and the line (see
    cut_torn_tail for the last line of an interrupted append)."""
    if not os.path.exists(path):
        return []
    records = []
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError as error:
                raise RunFileDamaged(f"{path} line {number} is not a JSON record "
                                     f"({str(error).splitlines()[0]}); nothing was changed.") \
                    from None
    return records


def cut_torn_tail(path):
    """Cuts a JSON-lines file back to its last complete record.

    A kill during ``append_jsonl`` leaves a last line without its newline
    that is not JSON.  Its bytes are first written to a side file
    (``<path>.torn``, or ``.torn-<n>``), then cut from `path`.  Returns the
    side file's path, or None when the file ends in a complete record.
    """
    if not os.path.exists(path):
        return None
    with open(path, "rb") as handle:
        data = handle.read()
    if not data or data.endswith(b"\n"):
        return None
    start = data.rfind(b"\n") + 1
    try:
        json.loads(data[start:])
        return None   # a complete record, only its newline is missing
    except ValueError:
        pass
    side, number = path + ".torn", 2
    while os.path.lexists(side):
        side, number = f"{path}.torn-{number}", number + 1
    with open(side, "wb") as handle:
        handle.write(data[start:])
        handle.flush()
        os.fsync(handle.fileno())
    with open(path, "r+b") as handle:
        handle.truncate(start)
        handle.flush()
        os.fsync(handle.fileno())
    return side
