"""python -m og_marl_omsd.datasets (og_marl_omsd/datasets/__main__.py): its arguments are checked before
TensorFlow loads or anything is written, and command-line errors are one line."""

import os
import sys

import pytest

from og_marl_omsd.datasets.__main__ import cli


@pytest.mark.parametrize(
    "arguments,fragment",
    [
        (["generate", "bandit", "--threads", "0"], "--threads must be >= 1 (got 0)"),
        (["generate", "bandit", "--threads", "-1"], "--threads must be >= 1 (got -1)"),
        (["generate", "bandit", "--datasets", "Bogus"], "Vault config bandit defines no dataset Bogus; it defines GMM"),
        (["generate", "Bogus"], "No vault config 'Bogus'"),
        (["generate", "bandit", "--vault-dir", "{file}/vaults"], "Cannot write the vault directory"),
    ],
)
def test_bad_generate_arguments_write_nothing_and_load_no_tensorflow(arguments, fragment, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    arguments = [argument.format(file=blocker) for argument in arguments]
    if "--vault-dir" not in arguments:
        arguments += ["--vault-dir", str(tmp_path / "vaults")]
    tensorflow_loaded = "tensorflow" in sys.modules
    assert cli(arguments) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and fragment in err, err
    assert sorted(os.listdir(tmp_path)) == ["a-file"]
    assert ("tensorflow" in sys.modules) == tensorflow_loaded  # rejected before TensorFlow was set up


@pytest.mark.slow
def test_datasets_command_line_errors_are_one_line(tmp_path, capsys, monkeypatch):
    from og_marl_omsd.datasets.__main__ import cli as datasets_cli

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    assert datasets_cli(["describe", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"Error: {tmp_path} is not a <scenario>.vlt directory."
    assert datasets_cli(["generate", "bandit", "--datasets", "Nope", "--vault-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("Error: Vault config bandit defines no dataset Nope; it defines GMM")
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ValueError):
        datasets_cli(["describe", str(tmp_path)])
