"""Shared fixtures and helpers: the bandit vaults, a finished run and a reference run per test session,
running the command line (to the end, interrupted, killed at a checkpoint), and quiet TF."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OG_MARL_OMSD_HOST", os.environ.get("OG_MARL_OMSD_HOST", "auto"))
# In-process entry points (main() of the CLIs) must not put a filter on pytest's stderr:
# tests see every line; tests/test_quiet.py checks the quiet default in subprocesses.
os.environ.setdefault("OG_MARL_OMSD_VERBOSE", "1")


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Under pytest-xdist (.ci/run: -n 2 --dist loadfile --no-loadscope-reorder) the files of many whole
# runs go to the workers first, so that no long file starts last while the other worker idles
# (xdist's own order, by number of tests, put test_baselines.py's three script runs at the end).
SLOWEST_FILES_FIRST = (
    "test_baselines.py",
    "test_cli.py",
    "test_run.py",
    "test_comparison.py",
    "test_datasets.py",
    "test_upstream.py",
    "test_models.py",
    "test_checkpoints.py",
    "test_device_data.py",
)


def pytest_collection_modifyitems(config, items):
    if os.environ.get("PYTEST_XDIST_WORKER"):  # each worker collects; all sort alike
        rank = {name: index for index, name in enumerate(SLOWEST_FILES_FIRST)}
        items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


def shared_dir(tmp_path_factory, name: str, build):
    """The folder ``name`` that ``build(path)`` fills once per test session. Under pytest-xdist
    (``-n 2``) the workers share it: each worker's basetemp lies in one session folder, and the
    first worker to need it builds it under a file lock while the others wait, then read it."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    path, complete = root / name, root / f"{name}.complete"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with contextlib.ExitStack() as unlock:
            unlock.callback(fcntl.flock, lock, fcntl.LOCK_UN)
            if not complete.exists():
                shutil.rmtree(path, ignore_errors=True)  # a build that failed part way
                path.mkdir()
                build(path)
                complete.touch()
    return path


@pytest.fixture(scope="session")
def bandit_vault_dir(tmp_path_factory) -> str:
    """A vault directory holding the bandit's GMM dataset (generated once per session)."""
    from og_marl_omsd.datasets.generate import ensure_datasets

    return str(shared_dir(tmp_path_factory, "vaults", lambda path: ensure_datasets("bandit", rel_dir=str(path))))


def quick_run_overrides(tmp_path, vault_dir: str) -> list:
    """Runner overrides for a few-second run that writes only under ``tmp_path``."""
    return [
        "training_steps=20",
        "evaluation_every=10",
        "num_eval_episodes=2",
        "system.critic_steps=20",
        "system.behaviour_steps=20",
        "system.pretrain_log_every=10",
        f"vault_dir={vault_dir}",
        f"pretrained_dir={tmp_path / 'pretrained'}",
        f"runs_root={tmp_path / 'runs'}",
    ]


@pytest.fixture(scope="session")
def small_vault_dir(tmp_path_factory) -> str:
    """A vault directory whose bandit dataset ``GMM`` has only 20,000 steps (fast runs)."""
    from og_marl_omsd.datasets.vaults import write_dataset
    from og_marl_omsd.environments.bandit import generate_bandit_experience

    def build(path):
        write_dataset(bandit_location(str(path)), "GMM", generate_bandit_experience(20_000, seed=0))

    return str(shared_dir(tmp_path_factory, "small_vaults", build))


def bandit_location(vault_dir: str):
    """Where the bandit's datasets live under ``vault_dir``."""
    from og_marl_omsd.datasets.vaults import VaultLocation

    return VaultLocation("og_marl_omsd", "bandit", "2agent_gmm", vault_dir)


def run_config(*overrides: str):
    """The runner's config composed in-process, as ``python -m og_marl_omsd.run <overrides>`` would."""
    from hydra import compose, initialize_config_module

    import og_marl_omsd.runner.run  # noqa: F401 (registers the run schema)

    with initialize_config_module(config_module="og_marl_omsd.configs", version_base=None):
        return compose(config_name="config", overrides=list(overrides))


# A bandit run of 10 steps per stage, checkpoints every 5 (the reference run's settings)
SMALL_RUN = [
    "system=omsd",
    "env=bandit",
    "seed=3",
    "training_steps=10",
    "evaluation_every=5",
    "num_eval_episodes=1",
    "checkpoint_every=5",
    "system.critic_steps=10",
    "system.behaviour_steps=10",
    "system.pretrain_log_every=5",
    "system.jit_compile=false",
]


PRETRAINED_STAGES = ("critic_joint", "behaviour_sequential")


def start_run(overrides, cwd, *extra_args):
    """``python -m og_marl_omsd.run`` started with stdout and stderr apart, Ctrl-C at its default."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.Popen(
        [sys.executable, "-m", "og_marl_omsd.run", *extra_args, *overrides],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=env,
        # Ctrl-C's default: a job started in the background by a non-interactive shell (a CI
        # runner, nohup) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt
        restore_signals=True,
        preexec_fn=_default_sigint,
    )


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def finish_run(overrides, cwd, *extra_args, timeout=600):
    """``python -m og_marl_omsd.run`` to its end: (exit code, stdout, stderr)."""
    process = start_run(overrides, cwd, *extra_args)
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def interrupt_at(overrides, line_prefix, cwd, sig=signal.SIGKILL):
    """Start the run, send ``sig`` as soon as stdout shows ``line_prefix``; returns (code, stdout, stderr)."""
    process = start_run(overrides, cwd)
    watchdog = threading.Timer(600, process.kill)
    watchdog.start()
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith(line_prefix):
                os.kill(process.pid, sig)
                break
        rest, err = process.communicate(timeout=120)
    finally:
        watchdog.cancel()
    return process.returncode, "".join(lines) + rest, err


def dead_pid():
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def results_of(run_dir):
    return json.loads((run_dir / "results.json").read_text())


@pytest.fixture(scope="session")
def reference(tmp_path_factory, small_vault_dir):
    """The uninterrupted bandit run of ``SMALL_RUN`` with a cache of its own: results, run dir, cache dir.
    Tests that resume, damage or reuse a run compare against it: identical results, evaluation returns included."""
    from og_marl_omsd.runner import run as runner

    def build(root):
        runner.run(
            run_config(
                *SMALL_RUN,
                f"vault_dir={small_vault_dir}",
                f"run_dir={root / 'run'}",
                f"pretrained_dir={root / 'cache'}",
            )
        )

    root = shared_dir(tmp_path_factory, "reference", build)
    return results_of(root / "run"), root / "run", root / "cache"


def assert_same_results(results, expected):
    assert results["evaluation_curve"] == expected["evaluation_curve"]  # bit for bit, evaluation returns included
    assert results["final_evaluation"] == expected["final_evaluation"]
    assert results["stage_steps"] == expected["stage_steps"]
    assert results["pretrained_cache_keys"] == expected["pretrained_cache_keys"]


def run_module(module, *arguments, cwd, extra_env=None):
    """``python -m <module> <arguments>`` to its end, output captured (a finished ``subprocess.run``)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(extra_env or {})}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", module, *arguments], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, small_vault_dir):
    """One captured CLI run (stdout is a pipe, as in a cluster log) on the 20k-step bandit vault:
    its run directory and its stdout."""

    def build(tmp_path):
        result = run_module(
            "og_marl_omsd.run",
            "seed=2",
            "training_steps=20",
            "evaluation_every=10",
            "num_eval_episodes=3",
            "system.critic_steps=20",
            "system.behaviour_steps=20",
            "system.pretrain_log_every=10",
            f"vault_dir={small_vault_dir}",
            f"pretrained_dir={tmp_path / 'pretrained'}",
            f"run_dir={tmp_path / 'run'}",
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        (tmp_path / "stdout.txt").write_text(result.stdout)

    tmp_path = shared_dir(tmp_path_factory, "finished", build)
    return tmp_path / "run", (tmp_path / "stdout.txt").read_text()


def fast_overrides(tmp_path, vault_dir, *extra, jit=False):
    """A run of 20 steps per stage, checkpoints every 5, writing only under ``tmp_path``."""
    defaults = [
        "training_steps=20",
        "evaluation_every=10",
        "num_eval_episodes=1",
        "checkpoint_every=5",
        "system.critic_steps=20",
        "system.behaviour_steps=20",
        "system.pretrain_log_every=10",
        f"system.jit_compile={str(jit).lower()}",
        f"vault_dir={vault_dir}",
        f"pretrained_dir={tmp_path / 'pretrained'}",
        f"runs_root={tmp_path / 'runs'}",
    ]
    chosen = {override.split("=", 1)[0] for override in extra}
    return [o for o in defaults if o.split("=", 1)[0] not in chosen] + list(extra)


def assert_nothing_written(tmp_path):
    assert not (tmp_path / "runs").exists() and not (tmp_path / "pretrained").exists()


def bad_vault(tmp_path, change, steps=200):
    """A vault dir holding dataset ``Bad``: the bandit data of ``steps`` steps after ``change(experience)``."""
    from og_marl_omsd.datasets.vaults import write_dataset
    from og_marl_omsd.environments.bandit import generate_bandit_experience

    experience = generate_bandit_experience(steps, seed=0)
    change(experience)
    vault_dir = str(tmp_path / "vaults")
    write_dataset(bandit_location(vault_dir), "Bad", experience)
    return vault_dir


def three_agents(e):
    for key in ("observations", "actions"):
        e[key] = np.concatenate([e[key], e[key][:, :1]], axis=1)
    for key in ("rewards", "terminals", "truncations"):
        e[key] = np.concatenate([e[key], e[key][:, :1]], axis=1)


def start_run_merged(overrides, cwd):
    """``python -m og_marl_omsd.run`` started with stderr merged into stdout."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.Popen(
        [sys.executable, "-m", "og_marl_omsd.run", *overrides],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
        env=env,
    )


def kill_at_checkpoint(overrides, stage, cwd):
    """Start the run and SIGKILL it as soon as it reports ``stage``'s checkpoint of step 10."""
    process = start_run_merged(overrides, cwd)
    watchdog = threading.Timer(300, process.kill)
    watchdog.start()
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith(f"[checkpoint] {stage} step 10/"):
                os.kill(process.pid, signal.SIGKILL)
                break
        process.wait(timeout=60)
    finally:
        watchdog.cancel()
    output = "".join(lines)
    assert process.returncode == -signal.SIGKILL, output[-3000:]
    return output


def resumed_step(output, stage):
    match = re.search(rf"\[resume\] resuming {stage} from step (\d+)", output)
    assert match, output[-3000:]
    return int(match.group(1))
