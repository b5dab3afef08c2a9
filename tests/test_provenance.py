"""support/provenance.py: what results and vaults record about the code and libraries that made them."""

import json
import os
import subprocess

import pytest

from conftest import REPO_ROOT


@pytest.mark.slow
def test_results_and_vaults_record_provenance(finished_run, small_vault_dir):
    from og_marl_omsd.support.provenance import collect

    run_dir, _ = finished_run
    results = json.loads((run_dir / "results.json").read_text())
    with open(os.path.join(small_vault_dir, "og_marl_omsd", "bandit", "2agent_gmm.vlt", "GMM", "metadata.json")) as f:
        stored = json.load(f)
    for record in (results["provenance"], stored.get("metadata", stored)["provenance"]):
        assert record["package"] == "og-marl-omsd" and record["package_version"]
        assert {"git_commit", "git_dirty"} <= set(record)
        for library in ("tensorflow", "dm-sonnet", "flashbax", "mujoco", "gymnasium-robotics"):
            assert record["versions"][library], library
    head = subprocess.run(["git", "-C", REPO_ROOT, "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # run from a checkout: its commit
        assert collect()["git_commit"] == results["provenance"]["git_commit"] == head.stdout.strip()
        assert isinstance(results["provenance"]["git_dirty"], bool)


@pytest.mark.slow
def test_provenance_keeps_the_commit_a_process_started_with(monkeypatch):
    """A long run or generation records the commit of the code it imported, even when the
    checkout moves on (a commit made while it runs) before it writes its records."""
    from og_marl_omsd.support import provenance

    states = iter([{"git_commit": "a" * 40, "git_dirty": False}, {"git_commit": "b" * 40, "git_dirty": True}])
    monkeypatch.setattr(provenance, "_PINNED", None)
    monkeypatch.setattr(provenance, "git_state", lambda: next(states))
    assert provenance.pin()["git_commit"] == "a" * 40  # the process starts at commit a ...
    record = provenance.collect()  # ... and writes after the checkout moved to b
    assert (record["git_commit"], record["git_dirty"]) == ("a" * 40, False)
    assert provenance.pin()["git_commit"] == "a" * 40  # the first pin wins
