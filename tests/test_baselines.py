"""Every script in ``baselines/`` runs end to end at a tiny budget (a refactor that breaks one
fails here): ``bandit.py`` (Table 1), ``compare.py`` (with the protocol's A/A twin),
``diagnose.py`` on a run the comparison made, and ``bench.py --smoke``."""

import glob
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["system.critic_steps=4", "system.behaviour_steps=4", "system.jit_compile=false"]


def script(name, *argv, cwd):
    environment = {key: value for key, value in os.environ.items() if key != "HYDRA_FULL_ERROR"}
    environment["OG_MARL_OMSD_HOST"] = "standalone"
    process = subprocess.run(
        [sys.executable, os.path.join(ROOT, "baselines", name), *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=environment,
        timeout=900,
    )
    assert process.returncode == 0, (
        f"{name} failed ({process.returncode}):\n{process.stdout[-3000:]}\n{process.stderr[-3000:]}"
    )
    return process.stdout


def test_bandit_script_writes_table_1(tmp_path, small_vault_dir):
    out = tmp_path / "bandit"
    argv = ["--seeds", "1", "--betas", "0.5", "--out", str(out), "--vault-dir", small_vault_dir]
    script(
        "bandit.py", *argv, "--pretrained-dir", str(tmp_path / "pretrained"), "training_steps=4", *TINY, cwd=tmp_path
    )
    with open(out / "table1.json") as handle:
        table = json.load(handle)
    assert set(table) >= {"omsd", "brpo_fac", "brpo_ind", "brpo_jal"}
    assert all(row["seeds"] == 1 for row in table.values())
    assert (out / "table1.md").is_file() and (out / "fig2.png").is_file()


def test_compare_script_runs_the_protocol_and_diagnose_reads_its_runs(tmp_path, small_vault_dir):
    out = tmp_path / "compare"
    argv = ["--out", str(out), "--env", "bandit", "--task", "bandit", "--datasets", "GMM"]
    argv += ["--systems", "brpo_fac", "bc", "--seeds", "2", "--select-seeds", "1", "--betas", "0.5", "--mode-seeking"]
    argv += ["--training-steps", "4", "--evaluation-every", "2", "--num-eval-episodes", "1"]
    argv += ["--critic-steps", "4", "--behaviour-steps", "4", "--progress-every", "600"]
    argv += ["--override", f"vault_dir={small_vault_dir}", "--override", "system.jit_compile=false"]
    printed = script("compare.py", *argv, cwd=tmp_path)
    with open(out / "records.json") as handle:
        records = json.load(handle)
    runs = sorted((r["system"], r["variant"], r["seed"]) for r in records)
    assert runs == [("bc", "", 0), ("bc", "", 1), ("brpo_fac", "", 0), ("brpo_fac", "", 1)] + [
        ("brpo_fac", "aa", 0),
        ("brpo_fac", "aa", 1),
    ]
    with open(out / "aa_floor.json") as handle:
        (floor,) = json.load(handle)
    assert floor["system"] == "brpo_fac" and floor["seeds"] == 2
    assert "A/A noise floor" in printed and "A/A noise floor" in (out / "table.md").read_text()
    fac_run = next(r["run_dir"] for r in records if r["system"] == "brpo_fac" and not r["variant"])
    diagnosis = tmp_path / "diagnose.json"
    script("diagnose.py", fac_run, "--out", str(diagnosis), "--horizon", "1", "--denoising-steps", "2", cwd=tmp_path)
    assert diagnosis.is_file() and os.path.getsize(diagnosis) > 0


@pytest.mark.slow
def test_bench_script_smoke(tmp_path):
    out = tmp_path / "bench"
    printed = script("bench.py", "--smoke", "--out", str(out), cwd=tmp_path)
    with open(out / "bench.json") as handle:
        report = json.load(handle)
    assert set(report["train_steps_per_s"]) == {"new/preset"}
    assert report["latency"]["systems"] and "Bench wall time" in printed
    assert glob.glob(str(out / "vaults" / "**" / "Medium"), recursive=True)
