"""Where a result or a dataset came from: the code version and the library versions.

``collect()`` gives a JSON-ready record that the runner stores in ``results.json`` and the
dataset writer in each vault's metadata::

    {"package": "og-marl-omsd", "package_version": "0.1.0",
     "git_commit": "6caf983...", "git_dirty": false,        # null when not run from a checkout
     "python": "3.11.9",
     "versions": {"tensorflow": "2.16.1", "dm-sonnet": "2.0.2", "flashbax": "0.1.3",
                  "mujoco": "3.2.0", "gymnasium-robotics": "1.4.0", ...}}

``git_dirty`` is true when tracked files differ from the commit (untracked files, such as
generated vaults and runs, do not count). A library that is not installed is ``null``.

A long process (a run, a dataset generation) can outlive commits made in its checkout, so its
entry point calls :func:`pin` first: every later record of that process then names the commit
of the code it imported, not whatever the checkout holds when the record is written.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from importlib import metadata
from typing import Any, Dict, Optional

PACKAGE = "og-marl-omsd"
LIBRARIES = (
    "tensorflow",
    "dm-sonnet",
    "flashbax",
    "jax",
    "numpy",
    "mujoco",
    "gymnasium",
    "gymnasium-robotics",
    "og-marl",
)


def package_version(distribution: str) -> Optional[str]:
    """The installed version of ``distribution``, or None when it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _git(directory: str, *args: str) -> Optional[str]:
    try:
        result = subprocess.run(["git", "-C", directory, *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def git_state(directory: Optional[str] = None) -> Dict[str, Any]:
    """``{"git_commit", "git_dirty"}`` of the checkout holding ``directory`` (default: this
    package's source); both None when it is not inside a git work tree (an installed wheel)."""
    directory = directory or os.path.dirname(os.path.abspath(__file__))
    top = _git(directory, "rev-parse", "--show-toplevel")
    # Only a checkout of this project counts: a package installed into some other repository's
    # venv must not report that repository's commit.
    if top is None or not os.path.isfile(os.path.join(top, "og_marl_omsd", "support", "provenance.py")):
        return {"git_commit": None, "git_dirty": None}
    commit = _git(top, "rev-parse", "HEAD")
    status = _git(top, "status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


@functools.lru_cache(maxsize=1)
def _static() -> Dict[str, Any]:
    return {
        "package": PACKAGE,
        "package_version": package_version(PACKAGE),
        "python": platform.python_version(),
        "versions": {name: package_version(name) for name in LIBRARIES},
    }


_PINNED: Optional[Dict[str, Any]] = None


def pin() -> Dict[str, Any]:
    """Read the checkout's git state now and keep it for every later :func:`collect` of this
    process (the first call wins); call it when a process starts, before its work."""
    global _PINNED
    if _PINNED is None:
        _PINNED = git_state()
    return dict(_PINNED)


def collect() -> Dict[str, Any]:
    """The provenance record (see the module docstring): the git state :func:`pin` kept, or read
    now when nothing pinned it."""
    static = _static()
    git = dict(_PINNED) if _PINNED is not None else git_state()
    return {**static, "versions": dict(static["versions"]), **git}
