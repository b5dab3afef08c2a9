"""The libraries' noise stays out of the terminal by default; verbose brings it back; errors
always show (og_marl_omsd/support/quiet.py, issue 22)."""

import os
import subprocess
import sys

import pytest

from og_marl_omsd.support.quiet import VERBOSE_ENV_VAR, is_noise

from conftest import REPO_ROOT

CUINIT = (
    "E0000 00:00:1796208425.790725    9002 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
    "Failed call to cuInit: UNKNOWN ERROR (303)"
)
NOISY = f"""
import os, sys, warnings
from og_marl_omsd.support import quiet
quiet.configure({{verbose}})
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
os.write(2, b"I0000 00:00:1796208414.020313    9002 cudart_stub.cc:31] Could not find cuda drivers on your machine.\\n")
os.write(2, b"{CUINIT}\\n")
warnings.warn("Setting max_size dynamically sets the max_length_time_axis")
os.write(2, b"E0000 00:00:1.5    9002 bfc_allocator.cc:1] Allocator ran out of memory\\n")
print("Error: a real one", file=sys.stderr)
"""


def quiet_env(**extra):
    env = {key: value for key, value in os.environ.items() if key not in (VERBOSE_ENV_VAR, "PYTHONWARNINGS")}
    return {**env, "PYTHONPATH": REPO_ROOT, **extra}


@pytest.mark.parametrize(
    "line,noise",
    [
        (CUINIT, True),
        ("I0000 00:00:1796208438.342200    9002 service.cc:153] XLA service initialized", True),
        ("W0000 00:00:1.0    12 cpu_feature_guard.cc:227] something", True),
        ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR", True),
        ("E0000 00:00:1.5    9002 bfc_allocator.cc:1] Allocator ran out of memory", False),
        ("Error: Bad run settings: training_steps must be > 0", False),
        ("Traceback (most recent call last):", False),
        (
            "AdroitHandRelocateDense-v1, AdroitHandHammerDense-v1, AdroitHandDoorDense-v1 environment's reward "
            "functions were updated in v1.2.1 without an environment version update. Therefore, use ...",
            True,
        ),
    ],
)
def test_only_known_informational_lines_are_noise(line, noise):
    assert is_noise(line.encode()) is noise


def test_quiet_by_default_keeps_errors_and_verbose_brings_the_noise_back():
    quiet = subprocess.run(
        [sys.executable, "-c", NOISY.format(verbose="False")], capture_output=True, text=True, env=quiet_env()
    )
    assert quiet.returncode == 0
    assert quiet.stderr.splitlines() == [
        "E0000 00:00:1.5    9002 bfc_allocator.cc:1] Allocator ran out of memory",  # an error line stays
        "Error: a real one",
    ]
    loud = subprocess.run(
        [sys.executable, "-c", NOISY.format(verbose="True")], capture_output=True, text=True, env=quiet_env()
    )
    for fragment in ("failed call to cuInit", "UserWarning", "Error: a real one"):
        assert fragment in loud.stderr


def test_runner_error_is_the_only_stderr_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "og_marl_omsd.run", "system.steps_per_call=0", f"runs_root={tmp_path / 'runs'}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=quiet_env(),
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert not (tmp_path / "runs").exists()
