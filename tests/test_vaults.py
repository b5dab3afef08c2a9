"""datasets/vaults.py: writing and reading vaults does not show flashbax's temporary names, and a full disk
during a write leaves no partial dataset."""

import errno
import os

import numpy as np
import pytest

from og_marl_omsd.datasets.vaults import read_dataset, write_dataset
from og_marl_omsd.environments.bandit import generate_bandit_experience
from og_marl_omsd.runner import run as runner
from og_marl_omsd.support.errors import UserError

from conftest import assert_nothing_written, bandit_location, fast_overrides, run_config


def test_writing_and_reading_a_vault_prints_no_temporary_name(tmp_path, capsys):
    location = bandit_location(str(tmp_path))
    write_dataset(location, "GMM", generate_bandit_experience(100, seed=0))
    data = read_dataset(location, "GMM")
    assert np.asarray(data["actions"]).shape[0] == 100
    out = capsys.readouterr().out
    assert ".partial" not in out and "New vault created" not in out and "Loading vault found" not in out, out


def test_full_disk_during_a_vault_write_leaves_no_partial_dataset(tmp_path, monkeypatch):
    from flashbax.vault import Vault

    real_write = Vault.write

    def write_then_disk_full(self, state, source_interval=(0, 0), dest_interval=None):
        real_write(self, state, source_interval=(0, 1000))  # part of the data reaches the disk
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Vault, "write", write_then_disk_full)
    vault_dir = tmp_path / "vaults"
    with pytest.raises(UserError, match="No space left on device") as error:
        runner.run(run_config(*fast_overrides(tmp_path, vault_dir)))
    assert "GMM" in str(error.value) and "run the same command again" in str(error.value)
    left = [name for _, _, names in os.walk(vault_dir) for name in names]
    assert all(name.endswith(".lock") for name in left), left  # no dataset, no partial write: only the generation lock
    assert bandit_location(str(vault_dir)).available() == []
    assert_nothing_written(tmp_path)
