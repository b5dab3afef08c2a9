"""The real CLI: a smoke run of every system, and clear errors for bad input."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, quick_run_overrides


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
