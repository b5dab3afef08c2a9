"""runner/steps.py (prepare_run) says what will happen: a run_dir that is a file is that error alone; a
damaged results.json is written again; a read-only pretrained cache serves the stages it holds."""

import os
import shutil

import pytest

from og_marl_omsd.runner import run as runner
from og_marl_omsd.runner import steps as run_steps
from og_marl_omsd.support.errors import UserError

from conftest import PRETRAINED_STAGES, SMALL_RUN, assert_same_results, results_of, run_config


def test_run_dir_that_is_a_file_is_one_error_without_a_false_resume_line(tmp_path, capsys):
    blocker = tmp_path / "run"
    blocker.write_text("a file where the run directory should be")
    with pytest.raises(UserError, match=r"Cannot write the run directory .*is not a directory"):
        run_steps.prepare_run(run_config(f"run_dir={blocker}", f"pretrained_dir={tmp_path / 'cache'}"))
    printed = capsys.readouterr().out
    assert "[resume]" not in printed and "damaged" not in printed, printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


@pytest.mark.slow
def test_damaged_results_json_is_written_again(tmp_path, small_vault_dir, reference, capsys):
    expected, reference_dir, cache = reference
    run_dir = tmp_path / "run"
    shutil.copytree(reference_dir, run_dir)
    (run_dir / "results.json").write_text('{"system": "om')
    results = runner.run(
        run_config(*SMALL_RUN, f"vault_dir={small_vault_dir}", f"run_dir={run_dir}", f"pretrained_dir={cache}")
    )
    assert "results.json is damaged" in capsys.readouterr().out
    assert_same_results(results, expected)
    assert_same_results(results_of(run_dir), expected)


@pytest.mark.slow
def test_read_only_cache_serves_the_stages_it_holds(tmp_path, small_vault_dir, reference, monkeypatch, capsys):
    from og_marl_omsd.runner import steps, validation

    expected, _, reference_cache = reference
    cache = tmp_path / "cache"
    shutil.copytree(reference_cache, cache)
    real_check = validation.check_writable_directory

    def read_only(path, what, setting):
        if setting == "pretrained_dir":
            raise UserError(f"Cannot write the {what} {path}: read-only file system.")
        real_check(path, what, setting)

    monkeypatch.setattr(steps, "check_writable_directory", read_only)  # where the run's steps call it
    before = sorted(os.listdir(cache))
    results = runner.run(
        run_config(*SMALL_RUN, f"vault_dir={small_vault_dir}", f"run_dir={tmp_path / 'run'}", f"pretrained_dir={cache}")
    )
    output = capsys.readouterr().out
    assert "is not writable: it is used read-only" in output
    assert all(f"[pretrain] {stage}: loaded from cache" in output for stage in PRETRAINED_STAGES)
    assert_same_results(results, expected)
    assert sorted(os.listdir(cache)) == before
