"""Hydra multirun (``-m``) reporting: every job runs; failures are listed at the end.

The runner's task function records a failed job here (:func:`record_failure`) and returns
instead of exiting, so Hydra's launcher goes on to the next job; :class:`SweepReport`, a
Hydra callback named in ``configs/config.yaml``, prints one line per failed job when the
sweep ends and exits with the largest failure code (2 bad input, 3 stopped, 1 other).
"""

from __future__ import annotations

import sys
from typing import Any, List, Tuple

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


class SweepReport(Callback):
    """Counts a sweep's jobs and reports its failures at the end (exit code non-zero if any)."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        _FAILURES.clear()
        _STATE["jobs"] = 0

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        _STATE["jobs"] += 1

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
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
