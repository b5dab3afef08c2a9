"""runner/sweep.py: a Hydra multirun runs every job and reports the failed ones at the end."""

import os

import pytest

from conftest import finish_run


@pytest.mark.slow
def test_sweep_runs_every_job_and_reports_failures_at_the_end(tmp_path, small_vault_dir):
    overrides = [
        "training_steps=2",
        "evaluation_every=2",
        "num_eval_episodes=1",
        "system.critic_steps=2",
        "system.behaviour_steps=2",
        "system.jit_compile=false",
        "system.beta=inf,0.5",
        f"vault_dir={small_vault_dir}",
        f"runs_root={tmp_path / 'runs'}",
        f"pretrained_dir={tmp_path / 'cache'}",
    ]
    code, out, err = finish_run(overrides, tmp_path, "-m")
    assert code == 2, out[-2000:] + err[-3000:]
    assert "Traceback" not in out + err
    report = err[err.index("[sweep]") :].splitlines()
    assert report[0] == "[sweep] 1 of 2 jobs failed:"
    assert len(report) == 2 and "system.beta=inf" in report[1] and "exit 2" in report[1] and "finite" in report[1]
    completed = [path for path, _, names in os.walk(tmp_path / "runs" / "omsd") if "results.json" in names]
    assert len(completed) == 1  # the job after the failed one ran to the end
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "outputs").exists()  # 11: no strays in the cwd
    assert len(list((tmp_path / "runs" / "multirun").glob("*/multirun.yaml"))) == 1
