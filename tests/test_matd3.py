"""Dataset generation's behaviour run (datasets/matd3.py) prints one progress format and no
loss before training starts (issue 22)."""

import re

import pytest

from og_marl_omsd.datasets.generate import MaMuJoCoDatasets, load_vault_config, location_of
from og_marl_omsd.support import progress

pytestmark = pytest.mark.slow  # a MATD3 run of the quick config (about half a minute)


def test_behaviour_run_prints_one_progress_format_and_no_loss_before_training(tmp_path, capsys):
    config = load_vault_config("2halfcheetah-quick")
    training = MaMuJoCoDatasets(config, location_of(config, str(tmp_path))).behaviour()
    progress.configure(every=0.0, mode="plain")
    try:
        training.run()
    finally:
        progress.configure(every=30.0, mode="auto")
    lines = capsys.readouterr().out.splitlines()
    with_rate = [line for line in lines if "steps/s" in line or "ETA" in line]
    assert with_rate and all(re.match(r"\[matd3\] \d+/3000 \(\d+%\) \| ", line) for line in with_rate), with_rate
    assert not [line for line in lines if "nan" in line.lower()], lines
    warmup = config["behaviour"]["warmup_steps"]
    for line in with_rate:
        step = int(re.match(r"\[matd3\] (\d+)/", line).group(1))
        assert ("critic_loss" in line) == (step > warmup), line  # a loss only once training has started
    assert any(line.startswith("[matd3] evaluation at step 3000/3000: return") for line in lines), lines
