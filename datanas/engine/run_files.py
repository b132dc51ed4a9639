"""Small helpers for the files a run writes into its --model_dir."""

import json
import os
import tempfile

__all__ = ["write_json_atomic", "write_text_atomic", "append_jsonl", "read_jsonl",
           "read_json", "cut_torn_tail", "set_aside", "RunFileDamaged"]


class RunFileDamaged(ValueError):
    """A file of a run directory cannot be read (one line naming it and what
    happened); nothing was changed that the message does not name."""


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


def write_text_atomic(path, text):
    """Writes a text file so that a kill never leaves a half-written file."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path, obj):
    """Writes JSON atomically (see write_text_atomic)."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def append_jsonl(path, record):
    """Appends one JSON record as a line (metrics history)."""
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")


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
