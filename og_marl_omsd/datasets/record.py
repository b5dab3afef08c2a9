"""Which data a result was computed from: the dataset record of a run directory.

A run directory holds ``dataset.json``: the dataset's name and folder, its content
fingerprint (:func:`~og_marl_omsd.datasets.vaults.fingerprint`, a sha256 of every array) and
a signature of its files (name, size, inode, modification and change time of each). Before a
run resumes its checkpoints or reports its finished result, and before the comparison reuses
a finished run, the dataset now on disk must have the recorded fingerprint; otherwise the run
is refused with :func:`changed_dataset_error` (the rule: one run directory, one dataset; a run
on other data needs a directory of its own). So a result never mixes two datasets and is never
reported for data that is no longer there. Runs finished before this record existed are
checked against the fingerprint their ``results.json`` holds.

Cost: the file signature is one ``stat`` per file (a 1M-transition vault of 2halfcheetah,
181 MB in 39 files: under 1 ms); while it matches the record, the recorded fingerprint is the
dataset's. When it does not (the folder was replaced, copied or touched) the dataset is read
and hashed again (that vault: 9 s to read and 0.7 s of sha256 on a 2-core machine; once per
process, see :func:`current_fingerprint`), a read that a run which trains does anyway.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Dict, Optional, Tuple

from og_marl_omsd.datasets.checks import check_readable_dataset, read_checked_dataset
from og_marl_omsd.support.errors import UserError

RECORD_FILE = "dataset.json"
_FINGERPRINTS: Dict[Tuple[str, str], str] = {}  # (dataset folder, file signature) -> content fingerprint


def files_signature(path: str) -> str:
    """A hash of every file's relative name, size, inode and modification and change times
    under ``path`` (``stat`` only, nothing is read). Any write, copy or replacement changes it."""
    digest = hashlib.sha256()
    for root, directories, names in os.walk(path, onerror=_raise):
        directories.sort()
        for name in sorted(names):
            full = os.path.join(root, name)
            stat = os.stat(full)
            relative = os.path.relpath(full, path)
            digest.update(f"{relative}|{stat.st_size}|{stat.st_ino}|{stat.st_mtime_ns}|{stat.st_ctime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _raise(error: OSError) -> None:
    raise error


def make_record(location: Any, uid: str, fingerprint: str) -> Dict[str, Any]:
    """The record of dataset ``uid`` at ``location`` whose content fingerprint is ``fingerprint``."""
    path = location.dataset_path(uid)
    return {
        "dataset": uid,
        "path": os.path.abspath(path),
        "fingerprint": fingerprint,
        "files": files_signature(path),
    }


def read_record(run_dir: str) -> Optional[Dict[str, Any]]:
    """The dataset a run directory was made from: its ``dataset.json``, else the fingerprint
    its ``results.json`` or its newest stage checkpoint records (``files`` is then ``None``);
    ``None`` when none says."""
    from og_marl_omsd.support.files import read_json

    record, problem = read_json(os.path.join(run_dir, RECORD_FILE))
    if problem is None and isinstance(record, dict) and isinstance(record.get("fingerprint"), str):
        return record
    results, problem = read_json(os.path.join(run_dir, "results.json"))
    if problem is None and isinstance(results, dict):
        fingerprint = (results.get("dataset_statistics") or {}).get("fingerprint")
        if isinstance(fingerprint, str):
            return {"dataset": results.get("dataset"), "fingerprint": fingerprint, "files": None}
    return _checkpoint_record(os.path.join(run_dir, "checkpoints"))


def _checkpoint_record(directory: str) -> Optional[Dict[str, Any]]:
    """The dataset fingerprint the newest checkpoint of any stage under ``directory`` records."""
    from og_marl_omsd.support.files import read_json

    try:
        stages = sorted(os.listdir(directory))
    except OSError:
        return None
    newest: Optional[Tuple[float, str]] = None
    for stage in stages:
        try:
            steps = [name for name in os.listdir(os.path.join(directory, stage)) if name.startswith("step-")]
        except OSError:
            continue
        for step in steps:
            state, problem = read_json(os.path.join(directory, stage, step, "state.json"))
            if problem is None and isinstance(state, dict) and isinstance(state.get("dataset_fingerprint"), str):
                modified = os.path.getmtime(os.path.join(directory, stage, step, "state.json"))
                if newest is None or modified > newest[0]:
                    newest = (modified, state["dataset_fingerprint"])
    return None if newest is None else {"dataset": None, "fingerprint": newest[1], "files": None}


def write_record(run_dir: str, record: Dict[str, Any]) -> None:
    from og_marl_omsd.support.files import write_json

    write_json(os.path.join(run_dir, RECORD_FILE), record)


def current_fingerprint(location: Any, uid: str, record: Optional[Dict[str, Any]] = None) -> Tuple[str, str]:
    """``(fingerprint, file signature)`` of dataset ``uid`` as it is on disk now.

    While the files' signature equals ``record["files"]``, the recorded fingerprint is taken
    (stat only); else the dataset is read (checked: :func:`~og_marl_omsd.datasets.checks.read_checked_dataset`)
    and hashed, once per process for the same files."""
    from og_marl_omsd.datasets.vaults import fingerprint

    check_readable_dataset(location, uid)
    path = location.dataset_path(uid)
    signature = files_signature(path)
    if record is not None and record.get("files") == signature:
        return str(record["fingerprint"]), signature
    key = (os.path.abspath(path), signature)
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = fingerprint(read_checked_dataset(location, uid))
    return _FINGERPRINTS[key], signature


def changed_dataset_error(run_dir: str, dataset_path: str, recorded: str, current: str, finished: bool) -> UserError:
    """The paragraph that refuses a run directory made from other data than the dataset now on disk."""
    what = "Its results" if finished else "Its checkpoints"
    return UserError(
        f"Dataset {dataset_path} changed since the run in {run_dir} was {'made' if finished else 'started'}: that "
        f"run was computed from data with fingerprint {recorded}, the folder now holds data with fingerprint "
        f"{current}. {what} belong to the old data, so they are neither "
        f"{'reported' if finished else 'resumed'} nor mixed with the new data. To run on the new data, choose "
        f"another run_dir=<path> (or move {run_dir} aside and run the same command); to "
        f"{'see' if finished else 'resume'} the old run, put the dataset it was made from back at {dataset_path}."
    )
