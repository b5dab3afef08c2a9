"""The real CLI, ``python -m og_marl_omsd.run``: a smoke run of every system, and bad input (settings,
data, Hydra-level errors) is one paragraph without a traceback."""

import json
import os
import subprocess
import sys

import pytest

from conftest import (
    REPO_ROOT,
    assert_nothing_written,
    bad_vault,
    finish_run,
    quick_run_overrides,
    three_agents,
)


def run_cli(*overrides, cwd=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", "og_marl_omsd.run", *overrides],
        capture_output=True,
        text=True,
        cwd=cwd or REPO_ROOT,
        env=env,
        timeout=600,
    )


@pytest.mark.slow
@pytest.mark.parametrize("system", ["omsd", "brpo_ind", "brpo_fac", "brpo_jal"])
def test_cli_smoke_run_of_every_system(system, tmp_path, bandit_vault_dir):
    run_dir = tmp_path / "run"
    result = run_cli(
        f"system={system}",
        "seed=1",
        f"run_dir={run_dir}",
        *quick_run_overrides(tmp_path, bandit_vault_dir),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Final mean return:" in result.stdout and "coordination rate:" in result.stdout
    results = json.loads((run_dir / "results.json").read_text())
    assert results["system"] == system and results["final_evaluation"]["training_steps"] == 20
    assert [e["training_steps"] for e in results["evaluation_curve"]] == [0, 10, 20]
    assert -1.0 <= results["final_evaluation"]["mean_episode_return"] <= 1.0
    config = (run_dir / "config.yaml").read_text()
    assert f"name: {system}" in config and "critic_steps: 20" in config
    metrics = json.loads((run_dir / "metrics.json").read_text())
    ((algorithm, seeds),) = metrics["bandit"]["bandit-GMM"].items()  # the dataset in the task name
    assert algorithm.split("@")[0] == system and "@beta=" in algorithm and "@critic_steps=20" in algorithm
    seed_data = seeds["seed_1"]
    assert [seed_data[step]["step_count"] for step in ("step_0", "step_1")] == [10, 20] and "step_2" not in seed_data
    assert len(seed_data["step_1"]["episode_return"]) == 20 and "mean_episode_return" in seed_data["absolute_metrics"]
    assert not (tmp_path / "outputs").exists()  # hydra wrote nothing of its own, never changed directory


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (["system=omsd_v2"], ["omsd_v2", "omsd", "brpo_fac"]),
        (["env=starcraft"], ["starcraft", "bandit", "mamujoco"]),
        (["task=9halfcheetah"], ["9halfcheetah", "2halfcheetah"]),
        (["seed=abc"], ["seed", "abc"]),
        (["training_steps=many"], ["training_steps", "many"]),
        (["system.beta=abc"], ["system.beta", "abc"]),
        (["system.betta=0.1"], ["system.betta"]),  # hydra refuses keys missing from the system's config
        (["+system.betta=0.1"], ["unknown parameter system.betta", "beta"]),  # forced in: our check names it
        (["env=bandit", "task=2halfcheetah"], ["2halfcheetah", "mamujoco"]),
        (["training_steps=0"], ["training_steps must be > 0"]),
        (
            ["env=mamujoco", "task=2halfcheetah", "dataset=NoSuchData"],
            [
                "'NoSuchData' does not exist",
                "Expert",
                "Medium",
                "Medium-Replay",
                "Random",
                "datasets generate 2halfcheetah",
            ],
        ),
    ],
)
def test_bad_input_is_one_clear_error_without_traceback(overrides, expected, tmp_path):
    result = run_cli(*overrides, f"runs_root={tmp_path / 'runs'}", f"vault_dir={tmp_path / 'vaults'}", cwd=tmp_path)
    assert result.returncode != 0
    message = result.stderr + result.stdout
    for fragment in expected:
        assert fragment in message, message[-2000:]
    assert "Traceback" not in message
    assert not (tmp_path / "runs").exists() and not (tmp_path / "vaults").exists()  # nothing written


@pytest.mark.slow
def test_hydra_level_errors_exit_2_without_traceback(tmp_path):
    for override in ("training_steps=1e6", "no_such_setting=1"):
        code, out, err = finish_run([override, f"runs_root={tmp_path / 'runs'}"], tmp_path, timeout=120)
        assert code == 2, err
        assert "Traceback" not in out + err and override.split("=")[0] in err
    assert not (tmp_path / "runs").exists()


def test_cli_prints_one_paragraph_and_exits_non_zero_without_traceback(tmp_path):
    vault_dir = bad_vault(tmp_path, three_agents)
    command = [
        sys.executable,
        "-m",
        "og_marl_omsd.run",
        "dataset=Bad",
        f"vault_dir={vault_dir}",
        f"runs_root={tmp_path / 'runs'}",
        f"pretrained_dir={tmp_path / 'pretrained'}",
    ]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "agent count: expected 2" in errors[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert_nothing_written(tmp_path)
