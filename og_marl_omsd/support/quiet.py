"""Keep the libraries' noise out of the user's terminal (``logger.verbose=true`` / ``--verbose``
brings it back).

TensorFlow, XLA and JAX write informational C++ log lines straight to file descriptor 2
(``I0000 ... cudart_stub.cc:31] Could not find cuda drivers``, ``E0000 ... failed call to
cuInit: UNKNOWN ERROR (303)`` on a machine without a GPU, the AVX notice, ...), flashbax
raises Python ``UserWarning``\\ s about buffer sizes and prints ``New vault created at
...`` / ``Loading vault found at ...``. None of it is something the user can act on.

:func:`configure` (called by every command-line entry point before TensorFlow is imported)
silences Python warnings and absl/JAX logging below ERROR, and puts a filter on file
descriptor 2 that drops only those known lines: everything else written to stderr (our
errors, a traceback, a C++ error line that is not on the list) still shows. The filter is
removed at exit, after what is left in it was written out. :func:`silent_stdout` hides a
library's ``print`` around one call (always). ``OG_MARL_OMSD_VERBOSE=1`` (set by a verbose entry point,
so its subprocesses follow) turns the filter, the warnings and the logging levels off.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import logging
import os
import re
import sys
import threading
import warnings
from typing import Any, Dict, Iterator, Optional

VERBOSE_ENV_VAR = "OG_MARL_OMSD_VERBOSE"

# C++ log lines (glog/absl format: level letter, date, time, thread, file:line]) that only inform.
_NATIVE_NOISE = re.compile(
    rb"^(?:"
    rb"[IW]\d{4} \d\d:\d\d:[\d.]+\s+\d+ [\w./-]+:\d+\]"  # informational and warning lines
    rb"|E\d{4} \d\d:\d\d:[\d.]+\s+\d+ [\w./-]+:\d+\] (?:failed call to cuInit|Unable to register cu)"  # no GPU
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags"
    rb"|An NVIDIA GPU may be present on this machine, but a CUDA-enabled jaxlib is not installed"
    rb"|.*environment's reward functions were updated in v1\.2\.1 without an environment version update"  # robotics
    rb")"
)
_state: Dict[str, Any] = {"original": None, "thread": None}


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV_VAR, "").strip().lower() in ("1", "true", "yes")


def is_noise(line: bytes) -> bool:
    """Whether a line written to stderr is one of the libraries' known informational lines."""
    return bool(_NATIVE_NOISE.match(line.lstrip(b"\r")))


def configure(verbose_output: Optional[bool] = None) -> None:
    """Quiet mode for this process (and its subprocesses), unless ``verbose_output`` or
    ``OG_MARL_OMSD_VERBOSE=1``; ``verbose_output=True`` also sets that variable."""
    if verbose_output:
        os.environ[VERBOSE_ENV_VAR] = "1"
    if verbose():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")  # subprocesses too
    for name in ("absl", "jax", "jax._src", "flashbax", "tensorflow", "orbax"):
        logging.getLogger(name).setLevel(logging.ERROR)
    _filter_native_stderr()


def _filter_native_stderr() -> None:
    """Route file descriptor 2 through a thread that drops :func:`is_noise` lines."""
    if _state["original"] is not None:
        return
    try:
        sys.stderr.flush()
        original = os.dup(2)
        reader, writer = os.pipe()
        os.dup2(writer, 2)
        os.close(writer)
    except OSError:  # no usable fd 2 (an embedded interpreter): leave stderr alone
        return
    target = os.dup(original)

    def pump() -> None:
        with os.fdopen(reader, "rb", buffering=0) as lines, os.fdopen(target, "wb", buffering=0) as out:
            pending = b""
            while True:
                chunk = lines.read(65536)
                if not chunk:
                    break
                pending += chunk
                *complete, pending = pending.split(b"\n")
                out.write(b"".join(line + b"\n" for line in complete if not is_noise(line)))
            if pending and not is_noise(pending):
                out.write(pending)

    thread = threading.Thread(target=pump, name="og-marl-omsd-stderr-filter", daemon=True)
    thread.start()
    _state.update(original=original, thread=thread)
    atexit.register(restore_stderr)


def restore_stderr() -> None:
    """Put the original stderr back and write out what the filter still holds."""
    original, thread = _state["original"], _state["thread"]
    if original is None:
        return
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os.dup2(original, 2)  # closes the pipe's last writer: the filter drains it and ends
    os.close(original)
    _state.update(original=None, thread=None)
    if thread is not None:
        thread.join(timeout=5)


@contextlib.contextmanager
def silent_stdout() -> Iterator[None]:
    """Hide what a library prints to ``sys.stdout`` inside the block, verbose or not (flashbax's
    ``New vault created at .../.partial-...`` names a temporary directory that is renamed at once)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield
