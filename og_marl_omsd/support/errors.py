"""The errors the runner prints as one paragraph (no traceback unless ``HYDRA_FULL_ERROR=1``),
and :func:`cli_entry`, the one wrapper of every command's ``main``.

Kept free of heavy imports so that the command line can report them without loading
TensorFlow. :class:`UserError` (a mistake in the command or the data: one paragraph, exit
code 2) is defined in :mod:`og_marl_omsd.upstream.og_marl_run`, which OG-MARL's ``og_marl/run.py``
is exported from, so that one class is caught everywhere.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Optional

from og_marl_omsd.upstream.og_marl_run import UserError as UserError


class StageStopped(RuntimeError):
    """A training stage stopped safely for a reason the user must act on: exit code 3."""

    exit_code = 3


class NonFiniteLossError(StageStopped, FloatingPointError):
    """A loss (or another logged value) became NaN or infinite; the last checkpoint is kept."""


class CheckpointWriteError(StageStopped):
    """A checkpoint could not be written (full disk, permissions); the previous one is intact."""


def user_error_message(error: Exception) -> Optional[str]:
    """The paragraph a command prints for ``error`` (a :class:`UserError`'s text), or ``None``
    when it is not the user's to act on (it propagates: a traceback)."""
    return str(error) if isinstance(error, UserError) else None


def cli_entry(
    main: Callable[[], Optional[int]],
    interrupted: str,
    message: Callable[[Exception], Optional[str]] = user_error_message,
) -> int:
    """Run a command's ``main`` and return its exit code: ``main``'s own (``None``: 0); Ctrl-C prints
    ``interrupted`` (one line) and gives 130; an error that ``message`` words (default: a
    :class:`UserError`) prints ``Error: <paragraph>`` and gives 2. With ``HYDRA_FULL_ERROR=1`` both
    propagate (the traceback). Every command of the plugin (``og_marl_omsd.run``,
    ``og_marl_omsd.evaluate``, ``og_marl_omsd.datasets``, ``baselines/compare.py``) wraps its main so."""
    full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"
    try:
        return main() or 0
    except KeyboardInterrupt:
        if full_error:
            raise
        print(interrupted, file=sys.stderr, flush=True)
        return 130
    except Exception as error:
        paragraph = None if full_error else message(error)
        if paragraph is None:
            raise
        print(f"Error: {paragraph}", file=sys.stderr, flush=True)
        return 2
