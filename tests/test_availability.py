"""datasets/availability.py: a task's datasets, generated on first use or by the command a run names."""

import pytest

from og_marl_omsd.support.errors import UserError

from conftest import run_config, run_module

MAMUJOCO_TASKS = ("2halfcheetah", "6halfcheetah", "2ant", "4ant", "3hopper", "2walker")


@pytest.mark.slow
@pytest.mark.parametrize("task", MAMUJOCO_TASKS)
def test_task_without_generated_data_stops_with_the_generate_command(task, tmp_path):
    from og_marl_omsd.runner.run import run

    vault_dir = tmp_path / "vaults"
    with pytest.raises(UserError) as error:
        run(
            run_config(
                "env=mamujoco",
                f"task={task}",
                f"vault_dir={vault_dir}",
                f"runs_root={tmp_path / 'runs'}",
                f"pretrained_dir={tmp_path / 'runs' / 'pretrained'}",
            )
        )
    assert f"python -m og_marl_omsd.datasets generate {task} --vault-dir {vault_dir}" in str(error.value)
    assert not vault_dir.exists() and not (tmp_path / "runs").exists()  # nothing generated or written


@pytest.mark.slow
def test_cli_on_missing_big_dataset_exits_2_with_the_command(tmp_path):
    result = run_module("og_marl_omsd.run", "env=mamujoco", "task=6halfcheetah", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "python -m og_marl_omsd.datasets generate 6halfcheetah\n" in result.stderr
    assert not (tmp_path / "vaults").exists()


@pytest.mark.slow
@pytest.mark.parametrize("task", MAMUJOCO_TASKS)
def test_every_task_has_a_valid_full_and_quick_vault_config(task):
    from og_marl_omsd.datasets.availability import generates_on_first_use
    from og_marl_omsd.datasets.generate import MaMuJoCoDatasets, load_vault_config, location_of

    for name, on_first_use in ((task, False), (f"{task}-quick", True)):
        config = load_vault_config(name)
        datasets = MaMuJoCoDatasets(config, location_of(config))  # keys, policies and scenario are checked
        assert config["scenario"] == task and set(config["datasets"]) >= {"Random", "Medium", "Medium-Replay", "Expert"}
        assert generates_on_first_use(config) is on_first_use
        if not on_first_use:
            assert datasets.behaviour_config.target_return > 0 and config["transitions"] == 1_000_000
    assert load_vault_config(run_config("env=mamujoco", f"task={task}").task.vault_config)["name"] == task
    assert generates_on_first_use(load_vault_config("bandit"))
