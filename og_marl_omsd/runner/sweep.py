"""Hydra multirun (``-m``) reporting: every job runs; failures are listed at the end.

The runner's task function records a failed job here (:func:`record_failure`) and returns
instead of exiting, so Hydra's launcher goes on to the next job; :class:`SweepReport`, a
Hydra callback named in ``configs/config.yaml``, prints one line per failed job when the
sweep ends and exits with the largest failure code (2 bad input, 3 stopped, 1 other).

Launchers that run jobs in other processes (joblib's workers, submitit's local or SLURM
jobs) run the task function and ``on_job_end`` there: each such job writes its outcome to
a small file in the sweep directory, which the sweep's own process reads at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from typing import Any, Dict, List, Optional, Tuple

from hydra.experimental.callback import Callback

_FAILURES: List[Tuple[int, str, int, str]] = []  # (job number, overrides, exit code, first line of the message)
_STATE = {"task_started": False, "jobs": 0}


def task_started() -> None:
    """Mark that Hydra reached the task function (a later exit 1 is not a command-line error)."""
    _STATE["task_started"] = True


def has_task_started() -> bool:
    return bool(_STATE["task_started"])


def record_failure(job: int, overrides: str, code: int, message: str) -> None:
    first = (message.strip().splitlines() or [""])[0]
    _FAILURES.append((job, overrides, code, first if len(first) <= 240 else first[:237] + "..."))


def failures() -> List[Tuple[int, str, int, str]]:
    return list(_FAILURES)


_OUTCOMES = "OG_MARL_OMSD_SWEEP_OUTCOMES"  # set by the sweep's process: {"owner": host:pid, "folder": ...}


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _outcomes() -> Optional[Dict[str, str]]:
    try:
        value = json.loads(os.environ.get(_OUTCOMES, ""))
    except ValueError:
        return None
    return value if isinstance(value, dict) and {"owner", "folder"} <= set(value) else None


class SweepReport(Callback):
    """Counts a sweep's jobs and reports its failures at the end (exit code non-zero if any)."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        _FAILURES.clear()
        _STATE["jobs"] = 0
        folder = os.path.join(os.path.abspath(str(config.hydra.sweep.dir)), f".jobs-{os.getpid()}")
        os.environ[_OUTCOMES] = json.dumps({"owner": _owner(), "folder": folder})  # inherited by job processes

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        _STATE["jobs"] += 1
        outcomes = _outcomes()
        if outcomes is None or outcomes["owner"] == _owner():
            return  # the sweep's own process (hydra's basic launcher): counted in memory
        number = int(config.hydra.job.num)
        mine = [failure for failure in _FAILURES if failure[0] == number]
        os.makedirs(outcomes["folder"], exist_ok=True)
        path = os.path.join(outcomes["folder"], f"{number}.json")
        with open(path + ".tmp", "w") as handle:
            json.dump({"failures": mine}, handle)
        os.replace(path + ".tmp", path)

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        outcomes = _outcomes()
        if outcomes is not None and outcomes["owner"] == _owner():
            os.environ.pop(_OUTCOMES, None)
            folder = outcomes["folder"]
            names = [name for name in (os.listdir(folder) if os.path.isdir(folder) else []) if name.endswith(".json")]
            for name in names:
                with open(os.path.join(folder, name)) as handle:
                    _FAILURES.extend(
                        (job, overrides, code, message)
                        for job, overrides, code, message in json.load(handle)["failures"]
                    )
                _STATE["jobs"] += 1
            _FAILURES.sort(key=lambda failure: failure[0])
            shutil.rmtree(folder, ignore_errors=True)
        jobs = _STATE["jobs"]
        if not _FAILURES:
            print(f"[sweep] all {jobs} jobs finished", flush=True)
            return
        lines = [f"[sweep] {len(_FAILURES)} of {jobs} jobs failed:"]
        lines += [
            f"[sweep]   job {job} ({overrides}): exit {code}: {message}" for job, overrides, code, message in _FAILURES
        ]
        print("\n".join(lines), file=sys.stderr, flush=True)
        sys.exit(max(code for _, _, code, _ in _FAILURES))
