"""Writing and reading vaults (datasets/vaults.py) does not show flashbax's temporary names (issue 22)."""

import numpy as np

from og_marl_omsd.datasets.vaults import read_dataset, write_dataset
from og_marl_omsd.environments.bandit import generate_bandit_experience

from conftest import bandit_location


def test_writing_and_reading_a_vault_prints_no_temporary_name(tmp_path, capsys):
    location = bandit_location(str(tmp_path))
    write_dataset(location, "GMM", generate_bandit_experience(100, seed=0))
    data = read_dataset(location, "GMM")
    assert np.asarray(data["actions"]).shape[0] == 100
    out = capsys.readouterr().out
    assert ".partial" not in out and "New vault created" not in out and "Loading vault found" not in out, out
