"""One writer per run directory: a lock file naming the process that owns it.

Two processes given the same ``--model_dir`` (a rerun started while the
first still runs, two ablation processes sharing a plan) would interleave
checkpoints and metrics.  ``acquire_run_lock`` creates ``run.lock``
atomically (``O_EXCL``) holding the owner's host, process id and start
time, and removes it when the process exits.  A lock left by a process that
no longer exists on this host (killed, crashed) is taken over, so a resume
after SIGKILL needs nothing by hand; a lock held by a live process, or by a
process on another host (which cannot be checked from here), is refused
with one line naming the owner and the file to delete if that owner is gone.
"""

import atexit
import json
import os
import socket
import time

__all__ = ["LOCK_FILE", "RunLocked", "acquire_run_lock", "release_run_lock",
           "release_all_run_locks"]

LOCK_FILE = "run.lock"
_HELD = set()


class RunLocked(ValueError):
    """Another live process writes this run directory."""


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # exists, owned by another user
        return True
    return True


def _read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None   # being written, or unreadable: treated as held below


def _create(path, owner):
    descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(owner, handle)


def _lock_path(model_dir):
    return os.path.join(os.path.abspath(model_dir), LOCK_FILE)


def acquire_run_lock(model_dir):
    """Makes this process the only writer of `model_dir` until it exits (or
    calls release_run_lock).  Re-entrant within one process.

    Raises:
      RunLocked: naming the live owner (host, process id, start time).
    """
    path = _lock_path(model_dir)
    if path in _HELD:
        return path
    owner = {"host": socket.gethostname(), "pid": os.getpid(),
             "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    for _ in range(3):
        try:
            _create(path, owner)
        except FileExistsError:
            held = _read(path)
            if held is None:
                time.sleep(0.2)   # another process is writing its lock right now
                continue
            same_host = held.get("host") == owner["host"]
            if same_host and held.get("pid") == owner["pid"]:
                break   # ours, from an earlier acquire (e.g. state reset in tests)
            if same_host and not _alive(int(held.get("pid", -1))):
                try:
                    os.remove(path)   # its owner was killed: take the run over
                except FileNotFoundError:
                    pass
                continue
            where = "this host" if same_host else f"host {held.get('host')!r}"
            raise RunLocked(
                f"{model_dir} is being written by process {held.get('pid')} on {where} "
                f"(since {held.get('started')}): wait for it to finish or stop it. If that "
                f"process no longer runs, delete {path} and rerun.")
        else:
            break
    else:
        raise RunLocked(f"{model_dir}: {path} cannot be read as a lock; if no process writes "
                        "this run, delete it and rerun.")
    _HELD.add(path)
    return path


def release_run_lock(model_dir):
    """Removes the lock this process holds on `model_dir`, if any (at exit,
    or when a run in a longer process is done)."""
    path = _lock_path(model_dir)
    if path not in _HELD:
        return
    _HELD.discard(path)
    held = _read(path)
    if held and held.get("pid") == os.getpid() and held.get("host") == socket.gethostname():
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


@atexit.register
def release_all_run_locks():
    """Releases every lock this process holds (registered to run at exit)."""
    for path in list(_HELD):
        release_run_lock(os.path.dirname(path))
