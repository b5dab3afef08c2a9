"""og_marl_omsd.runner.evaluate: bad input and a damaged SavedModel are one paragraph, exit 2, nothing
written (issue 22)."""

import json

import pytest

from og_marl_omsd.runner import evaluate
from og_marl_omsd.support.errors import UserError


@pytest.mark.parametrize("seed", ["-1", "2147483648"])
def test_seed_out_of_range_is_refused(seed):
    with pytest.raises(UserError, match=r"seed must be a whole number in \[0, 2147483647\]"):
        evaluate.parse_arguments(["runs/x", f"seed={seed}"])


def _run_with_damaged_policy(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "policy" / "variables").mkdir(parents=True)
    (run_dir / "config.yaml").write_text(
        "seed: 0\nnum_eval_episodes: 1\ntask: {source: og_marl_omsd, env_name: bandit, scenario: 2agent_gmm}\n"
    )
    (run_dir / "results.json").write_text(json.dumps({"final_evaluation": {"mean_episode_return": 0.5}}))
    (run_dir / "policy" / "policy.json").write_text(json.dumps({"agents": ["agent_0", "agent_1"]}))
    (run_dir / "policy" / "saved_model.pb").write_bytes(b"\x08\xff damaged bytes")
    return run_dir


def test_damaged_saved_model_is_one_paragraph_and_nothing_is_written(tmp_path, capsys):
    run_dir = _run_with_damaged_policy(tmp_path)
    assert evaluate.main([str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"Error: The exported policy {run_dir / 'policy'} cannot be loaded:"), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (run_dir / "evaluations").exists()


def test_damaged_results_json_is_one_paragraph(tmp_path, capsys):
    run_dir = _run_with_damaged_policy(tmp_path)
    (run_dir / "results.json").write_text("{truncated")
    assert evaluate.main([str(run_dir), "seed=1"]) == 2
    assert "results.json cannot be read" in capsys.readouterr().err
