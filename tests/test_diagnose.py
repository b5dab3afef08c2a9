"""comparison/diagnose.py: checks of a finished run's pretrained parts."""

import pytest


@pytest.mark.slow
def test_diagnose_checks_a_finished_runs_pretrained_parts_without_training(finished_run, capsys):
    """baselines/diagnose.py's library: the run's critic and behaviour model come from its
    pretrained cache (nothing trained), and both checks return measures in range."""
    from og_marl_omsd.comparison.diagnose import diagnose_run

    run_dir, _ = finished_run
    capsys.readouterr()
    result = diagnose_run(str(run_dir), horizon=1)  # bandit episodes are one step long
    out = capsys.readouterr().out
    assert out.count("loaded from cache") == 2 and "training" not in out
    assert result["critic_kind"] == "joint" and result["factorisation"] == "sequential"
    critic, behaviour = result["critic"], result["behaviour"]
    assert critic["pairs"] > 100 and -1.0 <= critic["correlation"] <= 1.0
    assert 0.0 <= behaviour["ood_share_samples"] <= 1.0 and behaviour["denoising_steps"] == 20
