"""og_marl_omsd.support.errors.cli_entry: every command's Ctrl-C, user-error and exit-code handling."""

from __future__ import annotations

import pytest

from og_marl_omsd.support.errors import UserError, cli_entry


def raising(error):
    def main():
        raise error

    return main


def test_the_exit_code_is_mains_own(capsys):
    assert cli_entry(lambda: 7, "stopped") == 7
    assert cli_entry(lambda: None, "stopped") == 0
    assert capsys.readouterr().err == ""


def test_ctrl_c_is_one_line_and_exit_130(capsys, monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    assert cli_entry(raising(KeyboardInterrupt()), "Interrupted. Run it again.") == 130
    assert capsys.readouterr().err == "Interrupted. Run it again.\n"


def test_a_user_error_is_one_paragraph_and_exit_2(capsys, monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    assert cli_entry(raising(UserError("Bad seed. Choose another.")), "stopped") == 2
    assert capsys.readouterr().err == "Error: Bad seed. Choose another.\n"


def test_other_errors_and_hydra_full_error_keep_the_traceback(monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(ZeroDivisionError):  # a bug is not the user's to act on
        cli_entry(raising(ZeroDivisionError()), "stopped")
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(UserError):
        cli_entry(raising(UserError("bad")), "stopped")
    with pytest.raises(KeyboardInterrupt):
        cli_entry(raising(KeyboardInterrupt()), "stopped")


def test_a_command_words_its_own_errors(capsys, monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)

    def message(error):
        return f"missing {error.args[0]}" if isinstance(error, KeyError) else None

    assert cli_entry(raising(KeyError("vault")), "stopped", message) == 2
    assert capsys.readouterr().err == "Error: missing vault\n"
    with pytest.raises(UserError):  # not one it words
        cli_entry(raising(UserError("bad")), "stopped", message)
