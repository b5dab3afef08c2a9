"""run_steps.prepare_run says what will happen: a run_dir that is a file is that error alone (issue 22)."""

import pytest

from og_marl_omsd.runner import steps as run_steps
from og_marl_omsd.support.errors import UserError

from conftest import run_config


def test_run_dir_that_is_a_file_is_one_error_without_a_false_resume_line(tmp_path, capsys):
    blocker = tmp_path / "run"
    blocker.write_text("a file where the run directory should be")
    with pytest.raises(UserError, match=r"Cannot write the run directory .*is not a directory"):
        run_steps.prepare_run(run_config(f"run_dir={blocker}", f"pretrained_dir={tmp_path / 'cache'}"))
    printed = capsys.readouterr().out
    assert "[resume]" not in printed and "damaged" not in printed, printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
