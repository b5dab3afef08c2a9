"""Checks of a dataset folder before and while it is read: readable (else the OS error, named as
what it is: permissions, a full disk, I/O), complete (a ``metadata.json``), not damaged (the
vault's own checks). Each raises :class:`UserError` with one paragraph; the runner
(:mod:`og_marl_omsd.runner.validation` re-exports them) and the dataset record
(:mod:`og_marl_omsd.datasets.record`) read datasets through them.
"""

from __future__ import annotations

import errno
import os
from typing import Any, Dict

from og_marl_omsd.support.errors import UserError


def os_error_paragraph(error: OSError, path: str, doing: str) -> str:
    """One paragraph naming an OS error as what it is (permission, full disk, I/O, ...), with its path."""
    where = getattr(error, "filename", None) or path
    reason = error.strerror or str(error)
    if error.errno in (errno.EACCES, errno.EPERM):
        advice = (
            f"This is a permission problem, not damaged data: nothing was changed. Give this user access "
            f"(e.g. chmod -R u+rwX '{path}', or run as the user that owns it) and run the same command again."
        )
    elif error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        advice = "The disk (or quota) is full: free disk space and run the same command again."
    elif error.errno == errno.EROFS:
        advice = "The file system is read-only: choose a writable location and run the same command again."
    elif error.errno == errno.EIO:
        advice = "The disk reported an input/output error: check the disk (dmesg) before trusting files on it."
    else:
        advice = "Fix the cause and run the same command again; nothing was changed."
    return f"Could not {doing} {where}: {reason} (errno {error.errno}). {advice}"


def check_readable_dataset(location: Any, uid: str) -> None:
    """Raise :class:`UserError` when the vault folder or dataset ``uid``'s folder exists but
    cannot be listed or its files opened (permissions, I/O): such a dataset is never called
    damaged or incomplete, and nothing is generated over it. A missing folder is fine."""
    path = location.dataset_path(uid)
    try:
        os.listdir(location.path)
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):  # not there (a file on the way): the writers' checks say so
        return
    except OSError as error:
        raise UserError(os_error_paragraph(error, location.path, "read")) from None
    if not os.path.isdir(path):
        raise UserError(
            f"{path} is not a folder, so it is not a dataset (a dataset is a folder written by the dataset "
            "generation). Move it aside (or choose another dataset=<name>) and run the same command again."
        )
    try:
        for root, _, names in os.walk(path, onerror=_raise):
            for name in names:
                with open(os.path.join(root, name), "rb") as handle:
                    handle.read(1)
    except OSError as error:
        raise UserError(os_error_paragraph(error, path, "read")) from None


def _raise(error: OSError) -> None:
    raise error


def check_dataset_folder(location: Any, uid: str) -> None:
    """A dataset folder that exists but is not a complete dataset (empty, or no ``metadata.json``:
    an interrupted copy or a damaged disk) is one paragraph naming it, not a generation attempt.
    Its folder was listed (:func:`check_readable_dataset` first): what it lacks is proven."""
    check_readable_dataset(location, uid)
    path = location.dataset_path(uid)
    if not os.path.isdir(path) or location.exists(uid):
        return
    contents = sorted(os.listdir(path))
    found = "it is empty" if not contents else f"it has no metadata.json (found: {', '.join(contents[:6])})"
    raise UserError(
        f"Dataset folder {path} is incomplete: {found}, so it was not written by a finished generation (or was "
        f"damaged since). Delete it (rm -r '{path}') and run the same command again to generate it, or copy the "
        "complete dataset there, or choose another with dataset=<name>."
    )


def read_checked_dataset(location: Any, uid: str) -> Dict[str, Any]:
    """``read_dataset``, with a damaged vault (a corrupted chunk fails flashbax's checksums, a
    missing or truncated file, ...) reported as one paragraph naming the folder. Files that
    cannot be opened (permissions, I/O) are named as such, never as damaged."""
    from og_marl_omsd.datasets.vaults import read_dataset  # flashbax, jax: loaded when a dataset is read

    check_readable_dataset(location, uid)
    path = location.dataset_path(uid)
    try:
        return read_dataset(location, uid)
    except MemoryError:
        raise
    except OSError as error:
        raise UserError(os_error_paragraph(error, path, "read")) from None
    except Exception as error:  # flashbax/tensorstore raise many kinds
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        if "PERMISSION_DENIED" in str(error) or "Permission denied" in str(error):
            raise UserError(
                f"Could not read dataset {path}: {reason}. This is a permission problem, not damaged data: nothing "
                f"was changed. Give this user read access (e.g. chmod -R u+rwX '{path}') and run the same command "
                "again."
            ) from None
        raise UserError(
            f"Dataset {path} cannot be read: {reason}. Its files were read and failed the vault's checks "
            f"(damaged or incomplete). Delete it (rm -r '{path}') and run the same command again to generate it, or "
            "restore it from a good copy."
        ) from None
