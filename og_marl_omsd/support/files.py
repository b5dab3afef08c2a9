"""The one place where the plugin writes files that must survive a crash, and its locks.

Every file a run writes goes through here:

- :func:`atomic_file` (any content, e.g. ``np.savez``), :func:`write_text` / :func:`write_json`:
  atomic replacement (a temporary file in the same directory, flushed and fsync'ed, then
  ``os.replace``): a reader sees the old file or the new one, never a truncated one, whatever
  kills the writer (Ctrl-C, ``kill -9``, a full disk).
- :func:`partial_dir` / :func:`publish_dir`: build a directory under a temporary name and
  rename it into place when complete (cache entries, checkpoints, datasets).
- :func:`file_lock`: an exclusive ``flock`` held while one process generates or trains what
  others would wait for (released by the kernel when its holder dies, even by SIGKILL);
  :func:`try_lock`: the same lock taken without waiting (a run directory has one run).
- :func:`remove_leftovers`: deletes the temporaries of writers that are gone.
- :func:`read_json`: a JSON file, or ``None`` with the reason when it is missing or damaged.

Temporaries carry the writer's pid (``.<name>.tmp-<pid>``, ``<name>.partial-<pid>``) so a
later run can tell its own from those of dead processes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import time
from typing import IO, Any, Callable, Iterator, List, Optional, Tuple

# Defined in og_marl_run (exported whole as og_marl/run.py, which writes its files the same way).
from og_marl_omsd.upstream.og_marl_run import (  # noqa: F401 (re-exported)
    TEMPORARY_MARK,
    _sync_directory,
    atomic_file,
    write_json,
    write_text,
)

PARTIAL_MARK = ".partial-"
# Errors that come from the disk or the file system rather than from the program.
DISK_ERRNOS = frozenset(
    getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "EIO") if hasattr(errno, name)
)
_LEFTOVER = re.compile(rf"(?:{re.escape(TEMPORARY_MARK)}|{re.escape(PARTIAL_MARK)})(\d+)$")


def read_json(path: str) -> Tuple[Any, Optional[str]]:
    """``(data, None)``, or ``(None, reason)`` when ``path`` is missing (reason ``"missing"``) or damaged."""
    try:
        with open(path) as handle:
            return json.load(handle), None
    except FileNotFoundError:
        return None, "missing"
    except (OSError, ValueError) as error:
        return None, f"damaged: {error}"


def partial_dir(path: str) -> str:
    """A fresh, empty temporary directory beside ``path`` for this process (``<path>.partial-<pid>``)."""
    partial = f"{os.path.abspath(path)}{PARTIAL_MARK}{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    return partial


def publish_dir(partial: str, path: str, replace: bool = True) -> bool:
    """Rename the complete directory ``partial`` to ``path``.

    With ``replace`` an existing ``path`` is removed first (an incomplete or stale copy);
    without it an existing ``path`` wins and ``partial`` is deleted. Returns whether
    ``partial`` became ``path``.
    """
    if os.path.exists(path):
        if not replace:
            shutil.rmtree(partial, ignore_errors=True)
            return False
        discard(path)
    os.rename(partial, path)
    _sync_directory(os.path.dirname(os.path.abspath(path)))
    return True


def discard(path: str) -> None:
    """Remove the directory ``path``: renamed aside first (one atomic step), then deleted."""
    if not os.path.exists(path):
        return
    aside = f"{os.path.abspath(path)}{PARTIAL_MARK}{os.getpid()}-old"
    shutil.rmtree(aside, ignore_errors=True)
    os.rename(path, aside)
    shutil.rmtree(aside, ignore_errors=True)


def process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(directory: str) -> List[str]:
    """Delete the temporaries (``*.tmp-<pid>``, ``*.partial-<pid>[-old]``) in ``directory`` whose
    writer is no longer alive; returns what was removed. Missing directories are fine."""
    removed: List[str] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        match = _LEFTOVER.search(name[:-4] if name.endswith("-old") else name)
        if match is None or process_alive(int(match.group(1))):
            continue
        path = os.path.join(directory, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.remove(path)
        removed.append(path)
    return removed


def try_lock(handle: IO[Any]) -> bool:
    """Take an exclusive lock on the open file ``handle`` without waiting: whether it was free.
    Where locks are not available (no ``fcntl``) there is nothing to take: ``True``. The kernel
    releases the lock when the handle is closed or its process exits (even by SIGKILL)."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        return True
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def file_lock(path: str, waiting: Optional[Callable[[str], None]] = None, poll_seconds: float = 0.5) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing) for the ``with`` block.

    When another process holds it, ``waiting(holder)`` is called once (``holder``: the pid
    it wrote, or ``"unknown"``) and this process waits for it. The kernel releases the lock
    when its holder exits or is killed. Where locks are not available (no ``fcntl``, or a
    read-only directory) the block runs unlocked.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        handle = open(path, "a+")
    except OSError as error:
        if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            yield  # a read-only shared directory: nothing will be written there, nothing to guard
            return
        raise
    with handle:
        if not try_lock(handle):
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            if waiting is not None:
                waiting(holder)
            while not try_lock(handle):  # polled, so that Ctrl-C still interrupts the wait
                time.sleep(poll_seconds)
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                handle.seek(0)
                handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_disk_error(error: BaseException) -> bool:
    """Whether ``error`` comes from the disk or file system (full, read-only, permissions, I/O)."""
    return isinstance(error, OSError) and error.errno in DISK_ERRNOS
