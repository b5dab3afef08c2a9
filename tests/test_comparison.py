"""Comparison outputs: beta rule, table, marl-eval layout, OOD measure, rliable aggregate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from og_marl_omsd.comparison import report
from og_marl_omsd.comparison.ood import JointActionSupport


def record(system, dataset, seed, beta, final, variant="", curve=None, dataset_mean=100.0, ood=None):
    return {
        "system": system,
        "variant": variant,
        "env": "mamujoco",
        "task": "2halfcheetah",
        "dataset": dataset,
        "seed": seed,
        "beta": beta,
        "final_return": final,
        "curve": curve or [[10, final / 2], [20, final]],
        "dataset_mean": dataset_mean,
        "ood_share": ood,
    }


def group(system, dataset, variant=""):
    return (f"{system}-{variant}" if variant else system, "mamujoco", "2halfcheetah", dataset)


def test_beta_rule_takes_the_mean_over_the_selection_seeds_and_breaks_ties_to_smaller_beta():
    records = [
        record("omsd", "Medium", 0, 0.01, 50.0),
        record("omsd", "Medium", 0, 0.1, 70.0),  # best on seed 0 alone
        record("omsd", "Medium", 1, 0.01, 500.0),
        record("omsd", "Medium", 1, 0.1, 10.0),  # but the mean over seeds 0-1 prefers 0.01
        record("omsd", "Medium", 2, 0.1, 10_000.0),  # seed 2 ran at one beta only: not a selection seed
        record("brpo_fac", "Medium", 0, 0.3, 40.0),
        record("brpo_fac", "Medium", 0, 0.03, 40.0),  # tie
        record("bc", "Medium", 0, None, 30.0),
        record("omsd", "Medium", 0, 0.3, 90.0, variant="mode_seeking"),
    ]
    choices = report.select_beta(records)
    assert choices[group("omsd", "Medium")] == 0.01
    assert choices[group("brpo_fac", "Medium")] == 0.03
    assert choices[group("bc", "Medium")] is None
    assert choices[group("omsd", "Medium", "mode_seeking")] == 0.3
    kept = report.chosen(records, choices)
    assert sorted((r["system"], r["variant"], r["seed"], r["beta"]) for r in kept) == sorted(
        [
            ("omsd", "", 0, 0.01),
            ("omsd", "", 1, 0.01),
            ("brpo_fac", "", 0, 0.03),
            ("bc", "", 0, None),
            ("omsd", "mode_seeking", 0, 0.3),
        ]
    )
    with pytest.raises(ValueError, match="some runs have a beta"):
        report.select_beta([record("bc", "Medium", 0, None, 1.0), record("bc", "Medium", 1, 0.1, 1.0)])


def test_the_aa_floor_pairs_the_twin_with_its_system_by_seed_at_the_chosen_beta():
    records = [record("brpo_fac", "Medium", seed, 0.1, 100.0 + 10 * seed) for seed in range(3)]
    records += [record("brpo_fac", "Medium", seed, 0.3, 1000.0) for seed in range(2)]  # not chosen? mean decides
    records += [record("brpo_fac", "Medium", seed, 0.1, 90.0 + 10 * seed, variant="aa") for seed in range(3)]
    records += [record("brpo_fac", "Medium", 3, 0.1, -500.0, variant="aa")]  # no partner seed: left out
    choices = report.select_beta(records)
    assert choices[group("brpo_fac", "Medium")] == 0.3  # mean over the common seeds 0-1
    choices[group("brpo_fac", "Medium")] = 0.1  # the floor reads the system at its chosen beta
    (row,) = report.aa_floor(records, choices)
    assert (row["system"], row["dataset"], row["seeds"], row["beta"]) == ("brpo_fac", "Medium", 3, 0.1)
    assert row["diff"] == pytest.approx(10.0) and row["abs_diff"] == pytest.approx(10.0)
    assert row["spread"] == pytest.approx(0.0)
    assert "| 2halfcheetah/Medium | brpo_fac | 0.1 | 3 | +10.0 |" in report.format_aa_floor([row])
    assert report.aa_floor([r for r in records if r["variant"] != "aa"], choices) == []


def test_table_from_a_small_fake_result_set():
    records = [
        record("omsd", "Medium", seed, 0.1, final, dataset_mean=2566.1, ood=share)
        for seed, final, share in ((0, 1.0, 0.0), (1, 2.0, 0.1), (2, 3.0, 0.2))
    ]
    records += [record("omsd", "Medium", 0, 1.0, -5.0, dataset_mean=2566.1)]  # not chosen: must not count
    records += [record("bc", "Expert", seed, None, 10.0 * (seed + 1), dataset_mean=4845.2) for seed in range(2)]
    rows = report.summary_rows(records, report.select_beta(records))
    by_name = {(row["algorithm"], row["dataset"]): row for row in rows}
    omsd = by_name[("omsd", "Medium")]
    assert omsd["seeds"] == 3 and omsd["beta"] == 0.1
    assert omsd["mean"] == pytest.approx(2.0) and omsd["std"] == pytest.approx(math.sqrt(2 / 3))
    assert 1.0 <= omsd["ci_low"] < 2.0 < omsd["ci_high"] <= 3.0
    assert omsd["ood_share"] == pytest.approx(0.1)
    assert by_name[("bc", "Expert")]["mean"] == pytest.approx(15.0)
    table = report.format_table(rows)
    assert "| 2halfcheetah/Medium | omsd | 2.0 +- 0.8 |" in table
    assert "| 2566.1 | 0.1 | 10.0% |" in table
    assert "| 2halfcheetah/Expert | bc | 15.0 +- 5.0 |" in table and "| 4845.2 | - | - |" in table


def test_bootstrap_ci_of_the_mean():
    rng = np.random.default_rng(1)
    values = rng.normal(5.0, 1.0, size=200)
    low, high = report.bootstrap_ci(values)
    half_width = 1.96 * values.std() / math.sqrt(values.size)  # normal approximation
    assert low == pytest.approx(values.mean() - half_width, abs=0.05)
    assert high == pytest.approx(values.mean() + half_width, abs=0.05)
    assert report.bootstrap_ci([3.0]) == (3.0, 3.0)


def test_marl_eval_layout_keeps_datasets_and_betas_apart(tmp_path):
    records = [
        record("omsd", dataset, seed, beta, final)
        for dataset in ("Medium", "Expert")
        for seed in range(2)
        for beta, final in ((0.01, 10.0 + seed), (0.1, 20.0 + seed))
    ]
    records += [record("bc", dataset, seed, None, 5.0) for dataset in ("Medium", "Expert") for seed in range(2)]
    choices = report.select_beta(records)
    report.write_marl_eval(records, choices, str(tmp_path))
    chosen_tree = report.merge_marl_eval(str(tmp_path / "chosen"))
    tasks = chosen_tree["mamujoco"]
    assert sorted(tasks) == ["2halfcheetah-Expert", "2halfcheetah-Medium"]
    for task in tasks.values():
        assert sorted(task) == ["bc", "omsd"]
        assert sorted(task["omsd"]) == ["seed_0", "seed_1"]  # two seeds, never four
        assert task["omsd"]["seed_1"]["absolute_metrics"]["mean_episode_return"] == [21.0]  # beta 0.1 chosen
        assert task["omsd"]["seed_0"]["step_1"] == {"step_count": 20, "mean_episode_return": [20.0]}
    grid = report.merge_marl_eval(str(tmp_path / "beta_grid"))["mamujoco"]["2halfcheetah-Medium"]
    assert sorted(grid) == ["bc", "omsd@beta=0.01", "omsd@beta=0.1"]
    with pytest.raises(ValueError, match="appears twice"):
        report.write_marl_eval(records[:1], choices, str(tmp_path / "clash" / "a"))
        report.write_marl_eval(records[:1], choices, str(tmp_path / "clash" / "b"))
        report.merge_marl_eval(str(tmp_path / "clash"))


def test_ood_measure_on_constructed_in_and_out_of_support_actions():
    rng = np.random.default_rng(0)
    states = rng.normal(size=(20_000, 3))
    coordinated = np.tanh(states[:, :1]) * 0.8 + 0.05 * rng.normal(size=(20_000, 1))
    actions = np.stack([coordinated, coordinated], axis=1)  # (M,2,1): both agents act alike
    support = JointActionSupport(states, actions, quantile=0.99, seed=0)
    held_states, held_actions = support.holdout_states, support.holdout_actions.reshape(-1, 2, 1)
    assert support.ood_share(held_actions) == pytest.approx(0.01, abs=0.01)
    # In support: a fresh draw from the behaviour at the same states.
    fresh = np.tanh(held_states[:, :1]) * 0.8 + 0.05 * rng.normal(size=(len(held_states), 1))
    assert support.ood_share(np.stack([fresh, fresh], axis=1)) < 0.05
    # Each agent in its marginal support, the pair not: a_2 = -a_1 (away from 0).
    far = np.abs(fresh[:, 0]) > 0.3
    assert support.ood_share(np.stack([fresh, -fresh], axis=1)[far], held_states[far]) > 0.95
    # A constant joint action far from the data's.
    assert support.ood_share(np.full((len(held_states), 2, 1), 1.5)) > 0.95
    # The held-out states' neighbours, found once, give what a fresh search gives.
    shifted = np.stack([fresh, fresh + 0.1], axis=1)
    assert support.ood_share(shifted) == support.ood_share(shifted, held_states)
    assert 0.05 < support.ood_share(shifted) < 0.95
    with pytest.raises(ValueError, match="pair up"):
        JointActionSupport(states, actions[:10])
    with pytest.raises(ValueError, match="held-out states"):
        support.ood_share(held_actions[:10])
    capped = JointActionSupport(states, actions, max_holdout=500, seed=0)
    assert len(capped.holdout_states) == 500 and capped.threshold == pytest.approx(support.threshold, rel=0.5)


def test_rliable_aggregate_orders_algorithms():
    pytest.importorskip("rliable")
    from og_marl_omsd.comparison.plots import aggregate_scores

    records = []
    for dataset in ("Medium", "Expert"):
        for seed in range(3):
            records.append(record("omsd", dataset, seed, 0.1, 90.0 + seed))
            records.append(record("bc", dataset, seed, None, 10.0 + seed))
    for seed in range(3):  # a variant on one dataset only: left out, not shrinking the datasets
        records.append(record("omsd", "Medium", seed, 0.1, 50.0, variant="mode_seeking"))
    aggregate = aggregate_scores(
        records, report.select_beta(records), {("mamujoco", "2halfcheetah"): (0.0, 100.0)}, reps=200
    )
    assert aggregate["datasets"] == ["2halfcheetah/Expert", "2halfcheetah/Medium"]
    assert aggregate["left_out"] == ["omsd-mode_seeking"] and set(aggregate["iqm"]) == {"omsd", "bc"}
    assert aggregate["iqm"]["omsd"]["value"] == pytest.approx(0.91, abs=0.011)
    assert aggregate["iqm"]["bc"]["value"] == pytest.approx(0.11, abs=0.011)
    assert aggregate["probability_of_improvement"]["bc"]["value"] == pytest.approx(1.0)


# ---------------------------------------------------------------------- jobs and launchers
def jobs_of(has_beta=lambda system: system != "bc", **more):
    from og_marl_omsd.comparison.jobs import Comparison

    comparison = Comparison(
        systems=["omsd", "brpo_fac", "bc"],
        datasets=["Medium", "Expert"],
        seeds=[0, 1, 2],
        betas=[0.01, 0.1],
        variants={"mode_seeking": ["Medium"]},
        **more,
    )
    return comparison, comparison.select_jobs(has_beta)


def test_the_protocol_selects_on_several_seeds_and_runs_the_aa_twin_at_the_chosen_beta():
    comparison, select = jobs_of(select_seeds=2, aa_system="brpo_fac")
    assert {job.seed for job in select} == {0, 1}
    assert len(select) == 2 * (2 * 2 * 2 + 2 + 2 * 2)  # every select job of one seed, for 2 seeds
    assert not any(job.variant == "aa" for job in select)
    chosen = {("omsd", "", "Medium"): 0.1, ("brpo_fac", "", "Medium"): 0.01, ("brpo_fac", "", "Expert"): 0.1}
    seeds = comparison.seed_jobs(lambda system: system != "bc", lambda *key: chosen.get(key))
    twins = [job for job in seeds if job.variant == "aa"]
    assert {(job.system, job.dataset, job.seed, job.beta) for job in twins} == {
        ("brpo_fac", dataset, seed, beta) for dataset, beta in (("Medium", 0.01), ("Expert", 0.1)) for seed in range(3)
    }
    assert {job.seed for job in seeds if job.variant != "aa"} == {2}
    (twin_overrides,) = {tuple(job.overrides()) for job in twins if job.seed == 0 and job.dataset == "Medium"}
    (plain_overrides,) = {
        tuple(job.overrides())
        for job in seeds + select
        if job.seed == 0
        and job.dataset == "Medium"
        and job.system == "brpo_fac"
        and job.beta == 0.01
        and not job.variant
    }
    # the A/A twin differs from its system's run in the behaviour models' seed only
    assert sorted(set(twin_overrides) ^ set(plain_overrides)) == ["system.behaviour_seed=1000"]
    assert {job.overrides()[-1] for job in twins} == {f"system.behaviour_seed={1000 + seed}" for seed in range(3)}
    with pytest.raises(ValueError, match="select_seeds"):
        jobs_of(select_seeds=4)
    with pytest.raises(ValueError, match="A/A system"):
        jobs_of(aa_system="brpo_jal")


def test_select_phase_runs_the_first_seed_at_every_beta():
    _, select = jobs_of()
    assert {job.seed for job in select} == {0}
    assert len(select) == 2 * 2 * 2 + 2 + 2 * 2  # beta systems x datasets x betas, bc per dataset, variant
    assert sorted(
        job.beta for job in select if job.system == "omsd" and job.dataset == "Medium" and not job.variant
    ) == [0.01, 0.1]
    assert all(job.beta is None for job in select if job.system == "bc")
    assert {(job.system, job.dataset) for job in select if job.variant == "mode_seeking"} == {
        ("omsd", "Medium"),
        ("brpo_fac", "Medium"),
    }


def test_seed_phase_runs_other_seeds_at_the_chosen_beta_only():
    comparison, _ = jobs_of()
    chosen = {
        ("omsd", "", "Medium"): 0.1,
        ("omsd", "", "Expert"): 0.01,
        ("brpo_fac", "", "Medium"): 0.01,
        ("omsd", "mode_seeking", "Medium"): 0.01,
    }  # brpo_fac on Expert: every select run failed
    seeds = comparison.seed_jobs(lambda system: system != "bc", lambda *key: chosen.get(key))
    assert {job.seed for job in seeds} == {1, 2}
    assert {(job.system, job.variant, job.dataset, job.beta) for job in seeds} == {
        ("omsd", "", "Medium", 0.1),
        ("omsd", "", "Expert", 0.01),
        ("brpo_fac", "", "Medium", 0.01),
        ("omsd", "mode_seeking", "Medium", 0.01),
        ("bc", "", "Medium", None),
        ("bc", "", "Expert", None),
    }


def test_run_dir_is_the_runners_and_composed_once_per_job(monkeypatch):
    from og_marl_omsd.comparison import jobs as comparison_jobs
    from og_marl_omsd.runner.run import plan_run

    job = comparison_jobs.Job("bc", "Medium", 7, None)
    common = ["env=bandit"]
    composed = []
    compose = comparison_jobs.compose
    monkeypatch.setattr(comparison_jobs, "compose", lambda overrides: composed.append(1) or compose(overrides))
    first = comparison_jobs.run_dir(job, common)
    assert comparison_jobs.run_dir(job, list(common)) == first and len(composed) == 1
    assert first == plan_run(compose([*common, *job.overrides()]))[3]
    assert comparison_jobs.run_dir(comparison_jobs.Job("bc", "Medium", 8, None), common) != first


def test_blocks_are_products_and_commands_carry_every_setting():
    from og_marl_omsd.comparison.jobs import Job, blocks, sweep_command, threads_per_job

    jobs = [Job("omsd", "Medium", 0, beta, "mode_seeking", ("system.critic_steps=7",)) for beta in (0.01, 0.1)]
    jobs += [Job("omsd", "Medium", seed, 0.03, "mode_seeking", ("system.critic_steps=7",)) for seed in (1, 2)]
    grouped = blocks(jobs)
    assert sorted(len(block) for block in grouped) == [2, 2]
    for block in grouped:
        seeds, betas = {job.seed for job in block}, {job.beta for job in block}
        assert len(block) == len(seeds) * len(betas)  # a hydra sweep is a product
    command = sweep_command([job for job in jobs if job.seed > 0], ["env=mamujoco", "training_steps=5"], "joblib", 2)
    assert command[1:4] == ["-m", "og_marl_omsd.run", "-m"]
    for part in (
        "system=omsd",
        "dataset=Medium",
        "seed=1,2",
        "system.beta=0.03",
        "system.t_max=0.1",
        "system.score_weight=one",
        "system.critic_steps=7",
        "env=mamujoco",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
    ):
        assert part in command
    assert "hydra/launcher=basic" not in sweep_command(jobs[:1], [], "basic", 1)
    assert threads_per_job(2, cores=2) == 1 and threads_per_job(1, cores=2) == 2 and threads_per_job(4, cores=2) == 1


@pytest.mark.parametrize(
    "launcher, target",
    [
        ("joblib", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"),
        ("submitit_slurm", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
    ],
)
def test_launcher_configs_compose(launcher, target):
    pytest.importorskip(f"hydra_plugins.hydra_{launcher.split('_')[0]}_launcher")
    from og_marl_omsd.comparison.jobs import compose

    cfg = compose(
        [
            f"hydra/launcher={launcher}",
            "hydra.launcher.timeout_min=60" if launcher != "joblib" else "hydra.launcher.n_jobs=2",
        ],
        hydra_node=True,
    )
    assert cfg.hydra.launcher._target_ == target


def test_blocks_sweep_systems_and_datasets_together_when_they_form_a_product():
    from og_marl_omsd.comparison.jobs import Job, blocks, sweep_command

    settings = ("system.critic_steps=7",)
    select = [
        Job(system, dataset, 0, beta, "", settings)
        for system in ("omsd", "brpo_fac")
        for dataset in ("Medium", "Expert")
        for beta in (0.01, 0.1)
    ]
    select += [Job("bc", dataset, 0, None, "", ()) for dataset in ("Medium", "Expert")]
    grouped = blocks(select)
    assert sorted(len(block) for block in grouped) == [2, 8]
    command = sweep_command(max(grouped, key=len), [], "basic", 1)
    assert {"system=omsd,brpo_fac", "dataset=Medium,Expert", "seed=0", "system.beta=0.01,0.1"} <= set(command)
    # Chosen betas differ by dataset: no product across datasets, one sweep per (system, dataset).
    seeds = [Job("omsd", "Medium", seed, 0.1, "", settings) for seed in (1, 2)]
    seeds += [Job("omsd", "Expert", seed, 0.01, "", settings) for seed in (1, 2)]
    grouped = blocks(seeds)
    assert sorted(sorted((job.dataset, job.seed, job.beta) for job in block) for block in grouped) == [
        [("Expert", 1, 0.01), ("Expert", 2, 0.01)],
        [("Medium", 1, 0.1), ("Medium", 2, 0.1)],
    ]
    for jobs in (select, seeds):
        assert sorted(map(repr, (job for block in blocks(jobs) for job in block))) == sorted(map(repr, jobs))


def test_returns_to_go_and_steps_left_follow_episode_ends():
    from og_marl_omsd.comparison.diagnose import returns_to_go, steps_left

    rewards = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    ends = np.array([False, False, True, False, True, False])  # episodes [0..2], [3..4], then an unfinished step
    returns = returns_to_go(rewards, ends, 0.5)
    np.testing.assert_allclose(returns[:5], [1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3.0, 4 + 0.5 * 5, 5.0])
    assert math.isnan(returns[5])
    np.testing.assert_array_equal(steps_left(ends), [3, 2, 1, 2, 1, -1])


def test_critic_and_behaviour_checks_on_exact_and_wrong_parts():
    """An exact critic (Q = the return that followed) has correlation 1 and no gap; a
    sampler that returns the dataset's own actions has the dataset's OOD share, one whose
    agents act independently (a_2 = -a_1) leaves the support."""
    from og_marl_omsd.comparison.diagnose import behaviour_check, critic_check, returns_to_go

    rng = np.random.default_rng(1)
    steps, agents = 3000, 2
    states = rng.normal(size=(steps, 3)).astype(np.float32)
    coordinated = np.tanh(states[:, :1]) * 0.8
    actions = np.stack([coordinated, coordinated], axis=1)  # (T, 2, 1)
    rewards = np.repeat(rng.normal(size=(steps, 1)), agents, axis=1)
    ends = np.zeros((steps, agents))
    ends[999::1000] = 1.0  # three 1000-step episodes
    experience = {
        "rewards": rewards,
        "terminals": np.zeros_like(ends),
        "truncations": ends,
        "actions": actions,
        "infos": {"state": states},
    }
    exact = returns_to_go(rewards.mean(axis=-1) * 2.0, ends.max(axis=-1) > 0, 0.9)
    row = {tuple(s): g for s, g in zip(states.tolist(), exact)}
    result = critic_check(lambda s, a: np.array([row[tuple(x)] for x in s.tolist()]), experience, 2.0, 0.9, horizon=100)
    assert result["pairs"] == 3 * 901
    assert result["correlation"] == pytest.approx(1.0)
    assert result["mean_q_minus_return"] == pytest.approx(0.0, abs=1e-5)
    constant = critic_check(lambda s, a: np.full(len(s), 3.0), experience, 2.0, 0.9, horizon=100)
    assert math.isnan(constant["correlation"]) and constant["mean_q"] == 3.0

    support = JointActionSupport(states, actions, seed=0)
    lookup = {tuple(s): a for s, a in zip(support.holdout_states.tolist(), support.holdout_actions)}
    same = behaviour_check(lambda s, _: np.stack([lookup[tuple(x)] for x in s.astype(np.float64).tolist()]), support)
    assert same["ood_share_samples"] == same["ood_share_dataset"] and same["mean_abs_gap"] == pytest.approx(0.0)
    flipped = behaviour_check(
        lambda s, _: np.stack([np.tanh(s[:, :1]) * 0.8, -np.tanh(s[:, :1]) * 0.8], axis=1), support
    )
    assert flipped["ood_share_samples"] > 0.5 > same["ood_share_samples"]


def test_runs_without_dataset_statistics_take_the_datasets_mean_from_other_runs():
    """OG-MARL's own systems write no dataset statistics: their records get the mean the
    plugin's runs recorded on the same dataset, and the table prints it."""
    base = {
        "system": "iddpg_bc",
        "env": "mamujoco",
        "task": "2halfcheetah",
        "dataset": "Medium",
        "seed": 0,
        "final_evaluation": {"mean_episode_return": 5.0},
        "evaluation_curve": [{"training_steps": 10, "mean_episode_return": 5.0}],
    }
    records = [
        report.record_from_results(base, None),
        record("bc", "Medium", 0, None, 1.0, dataset_mean=2566.1),
        report.record_from_results({**base, "dataset": "Expert"}, None),
    ]
    assert records[0]["dataset_mean"] is None
    report.fill_dataset_means(records)
    assert records[0]["dataset_mean"] == 2566.1 and records[2]["dataset_mean"] is None  # no run knows Expert's
    table = report.format_table(report.summary_rows(records, report.select_beta(records)))
    assert "| 2halfcheetah/Medium | iddpg_bc | 5.0 +- 0.0 | [5.0, 5.0] | 1 | 2566.1 | - | - |" in table
    assert "| 2halfcheetah/Expert | iddpg_bc | 5.0 +- 0.0 | [5.0, 5.0] | 1 | - | - | - |" in table


def test_report_only_launches_nothing_and_keeps_the_comparisons_settings(tmp_path, monkeypatch, capsys):
    """``compare.py --report-only`` (safe beside a running comparison) writes outputs from
    the finished runs and never launches a run or overwrites ``comparison.json``."""
    import importlib.util
    import json
    import os

    from og_marl_omsd.comparison import jobs

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "baselines", "compare.py")
    spec = importlib.util.spec_from_file_location("compare_script", path)
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)

    def no_launch(*args, **kwargs):
        raise AssertionError("--report-only launched a run")

    monkeypatch.setattr(jobs, "launch", no_launch)
    (tmp_path / "comparison.json").write_text('{"kept": true}')
    argv = ["--out", str(tmp_path), "--env", "bandit", "--task", "bandit", "--datasets", "GMM"]
    argv += ["--systems", "bc", "omsd", "--seeds", "2", "--betas", "0.1", "--report-only"]
    assert compare.main(argv) == 0
    assert json.loads((tmp_path / "comparison.json").read_text()) == {"kept": True}
    assert json.loads((tmp_path / "records.json").read_text()) == []
    printed = capsys.readouterr().out
    # The default mode-seeking dataset (Medium-Replay) is not compared here: no variant jobs.
    # 2 seeds: both select beta (min(3, seeds)); bc and omsd at the one beta
    assert "phase select (first 2 seed(s), every beta): 0/4 runs finished (--report-only: nothing launched)" in printed
    assert "no finished runs" in printed and "mode_seeking" not in printed
    with pytest.raises(SystemExit):
        compare.parse_args(argv + ["--mode-seeking", "Medium-Replay"])
    assert "not among --datasets" in capsys.readouterr().err


def test_figures_are_written_with_one_colour_per_algorithm(tmp_path):
    """learning_curves.png and beta.png from a small fake result set; an algorithm keeps its
    colour across figures and the compared systems' colours differ."""
    pytest.importorskip("matplotlib")
    from og_marl_omsd.comparison import plots

    records = [
        record(system, dataset, seed, beta, final, dataset_mean=50.0)
        for dataset in ("Medium", "Expert")
        for seed in (0, 1)
        for system, beta, final in (("omsd", 0.01, 90.0), ("omsd", 0.1, 70.0), ("bc", None, 80.0))
    ]
    records.append(record("omsd", "Expert", 0, 0.1, 60.0, variant="mode_seeking", dataset_mean=50.0))
    choices = report.select_beta(records)
    curves, betas = str(tmp_path / "curves.png"), str(tmp_path / "beta.png")
    plots.plot_learning_curves(records, choices, curves)
    plots.plot_beta(records, betas)
    for path in (curves, betas):
        with open(path, "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    systems = ("omsd", "brpo_fac", "brpo_ind", "brpo_jal", "bc", "iddpg_bc")
    assert len({plots.colour(name) for name in systems}) == len(systems)
    assert plots.colour("omsd-mode_seeking") == plots.colour("omsd")  # same system, dashed
    assert plots.line_style("omsd-mode_seeking") != plots.line_style("omsd") == plots.line_style("bc")
    # one legend with every algorithm of every panel: the variant ran on Expert only
    plt = plots._pyplot()
    figure, axes = plt.subplots(1, 2)
    axes[0].plot([0, 1], label="omsd")
    axes[1].plot([0, 1], label="omsd")
    axes[1].plot([0, 1], label="omsd-mode_seeking")
    axes[0].axhline(0.5, label="dataset mean")
    assert plots.legend_entries(axes)[1] == ["omsd", "omsd-mode_seeking", "dataset mean"]
    plt.close(figure)


# ---------------------------------------------------------------------- the cluster path, run for real
def test_submitit_local_sweeps_run_n_at_a_time_with_a_long_timeout_and_logs_beside_the_comparisons():
    from og_marl_omsd.comparison.jobs import LOCAL_TIMEOUT_MIN, Job, parallel_jobs, sweep_command

    block = [Job("bc", "GMM", seed) for seed in (0, 1, 2)]
    command = sweep_command(block, ["env=bandit"], "submitit_local", 2, logs_dir="/tmp/out/logs")
    assert command[-4:] == [
        "hydra/launcher=submitit_local",
        "hydra.sweeper.max_batch_size=2",
        f"hydra.launcher.timeout_min={LOCAL_TIMEOUT_MIN}",
        "hydra.launcher.submitit_folder=/tmp/out/logs/submitit/%j",
    ]
    given = ["hydra.launcher.timeout_min=5", "hydra.launcher.submitit_folder=/elsewhere/%j"]
    command = sweep_command(block, [], "submitit_local", 1, given, "/tmp/out/logs")
    assert command[-3:] == ["hydra.sweeper.max_batch_size=1", *given]  # the user's settings replace ours
    slurm = sweep_command(block, [], "submitit_slurm", 3, [], "/tmp/out/logs")
    assert "hydra.launcher.submitit_folder=/tmp/out/logs/submitit/%j" in slurm
    assert not any("max_batch_size" in part or "timeout_min" in part for part in slurm)  # the cluster decides
    assert [parallel_jobs(launcher, 3) for launcher in ("basic", "joblib", "submitit_local", "submitit_slurm")] == [
        1,
        3,
        3,
        1,
    ]


def _compare(out, vault_dir, launcher):
    """``baselines/compare.py`` on a tiny bandit comparison (BC, 2 seeds, 40 steps, a checkpoint every 10),
    in its own process group."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    argv = [sys.executable, os.path.join(root, "baselines", "compare.py"), "--out", str(out), "--launcher", launcher]
    argv += ["--env", "bandit", "--task", "bandit", "--datasets", "GMM", "--systems", "bc", "--seeds", "2"]
    argv += ["--select-seeds", "1"]  # seed 0 in phase select, seed 1 in phase seeds
    argv += ["--training-steps", "40", "--evaluation-every", "20", "--num-eval-episodes", "2"]
    argv += ["--override", f"vault_dir={vault_dir}", "--override", "checkpoint_every=10", "--progress-every", "600"]
    environment = {key: value for key, value in os.environ.items() if key != "HYDRA_FULL_ERROR"}
    return subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
        start_new_session=True,  # the comparison, its sweeps and submitit's job processes: one group to kill
    )


def _results(out):
    """What a comparison produced, without the paths that name its output directory."""
    import json
    import os

    with open(os.path.join(out, "records.json")) as handle:
        records = [{k: v for k, v in record.items() if k != "run_dir"} for record in json.load(handle)]
    marl_eval = {}
    for folder, _, names in os.walk(os.path.join(out, "marl_eval")):
        for name in names:
            with open(os.path.join(folder, name)) as handle:
                marl_eval[os.path.relpath(os.path.join(folder, name), out)] = json.load(handle)
    return records, marl_eval


@pytest.mark.slow
def test_a_comparison_through_submitit_local_killed_and_restarted_equals_the_basic_launchers(tmp_path, small_vault_dir):
    """The cluster path for real: every run pickled, submitted and collected by hydra's
    submitit launcher (as on SLURM, on this machine). The comparison is killed (SIGKILL, its
    whole process group) in the middle of its second run, started again, and then gives the
    same records and marl-eval files as the same comparison through the basic launcher."""
    import glob
    import os
    import signal
    import time

    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    basic = _compare(tmp_path / "basic", small_vault_dir, "basic")
    output = basic.communicate(timeout=900)[0]
    assert basic.returncode == 0, output[-3000:]

    out = tmp_path / "submitit"
    second_run = str(out / "runs" / "bc" / "bandit-bandit" / "GMM" / "seed1-*")
    first = _compare(out, small_vault_dir, "submitit_local")
    deadline = time.monotonic() + 900
    while not glob.glob(os.path.join(second_run, "checkpoints", "actors", "step-000000010")):
        assert first.poll() is None, f"finished before it could be killed: {first.communicate()[0][-3000:]}"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate(timeout=60)
    assert glob.glob(os.path.join(str(out), "runs", "bc", "*", "GMM", "seed0-*", "results.json"))
    assert not glob.glob(os.path.join(second_run, "results.json")), "the second run ended before the kill"

    again = _compare(out, small_vault_dir, "submitit_local")
    output = again.communicate(timeout=900)[0]
    assert again.returncode == 0, output[-3000:]
    assert "phase select (first 1 seed(s), every beta): 1 runs, 1 already finished" in output
    assert _results(out) == _results(tmp_path / "basic")
    assert _results(out)[0] and len(_results(out)[1]) == 4  # 2 records; 2 seeds x (chosen, beta grid)
    # Each run went through submitit (a pickled job, its pickled result) and was counted by its sweep.
    jobs = str(out / "logs" / "submitit" / "*")
    assert len(glob.glob(os.path.join(jobs, "*_submitted.pkl"))) == 3  # seed 0, seed 1 (killed), seed 1 again
    assert len(glob.glob(os.path.join(jobs, "*_result.pkl"))) == 2
    with open(out / "logs" / "bc.log") as handle:
        assert handle.read().count("[sweep] all 1 jobs finished") == 2


def test_a_failed_job_under_submitit_local_is_reported_by_its_sweep(tmp_path, small_vault_dir):
    """A job run by submitit in another process: its failure still reaches the sweep's report and exit code."""
    import os
    import subprocess
    import sys

    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    overrides = ["env=bandit", "system=omsd", "dataset=GMM", "system.beta=inf", f"vault_dir={small_vault_dir}"]
    overrides += [f"runs_root={tmp_path / 'runs'}", f"pretrained_dir={tmp_path / 'cache'}"]
    overrides += ["hydra/launcher=submitit_local", f"hydra.launcher.submitit_folder={tmp_path / 'submitit'}/%j"]
    environment = {key: value for key, value in os.environ.items() if key != "HYDRA_FULL_ERROR"}
    process = subprocess.run(
        [sys.executable, "-m", "og_marl_omsd.run", "-m", *overrides],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=600,
    )
    assert process.returncode == 2, process.stdout[-2000:] + process.stderr[-3000:]
    report = process.stderr[process.stderr.index("[sweep]") :].splitlines()
    assert report[0] == "[sweep] 1 of 1 jobs failed:"
    assert "system.beta=inf" in report[1] and "exit 2" in report[1] and "finite" in report[1]
    assert not list((tmp_path / "runs" / "multirun").glob("*/.jobs-*"))  # the outcome files are read, then removed


def _compare_script():
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "baselines", "compare.py")
    spec = importlib.util.spec_from_file_location("compare_script", path)
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    return compare


def test_finished_runs_made_from_other_data_are_not_reused(tmp_path, small_vault_dir, monkeypatch, capsys):
    """A finished run counts only while its recorded dataset fingerprint is the dataset's on
    disk now (og_marl_omsd.datasets.record): otherwise it is neither reported nor collected."""
    import json
    import os

    from og_marl_omsd.comparison import jobs
    from og_marl_omsd.datasets import record
    from og_marl_omsd.datasets.vaults import fingerprint, read_dataset

    from conftest import bandit_location

    location = bandit_location(small_vault_dir)
    actual = fingerprint(read_dataset(location, "GMM"))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    results = {"dataset": "GMM", "final_evaluation": {}, "dataset_statistics": {"fingerprint": actual}}
    (run_dir / "results.json").write_text(json.dumps(results))
    assert jobs.other_data(str(run_dir), location, "GMM") is None  # made from this very data
    (run_dir / "results.json").write_text(json.dumps({**results, "dataset_statistics": {"fingerprint": "0" * 16}}))
    assert "now holds " + actual in jobs.other_data(str(run_dir), location, "GMM")
    # its own record wins; while the files' signature matches it, nothing is read
    record.write_record(str(run_dir), record.make_record(location, "GMM", actual))
    monkeypatch.setattr(record, "_FINGERPRINTS", {})
    assert jobs.other_data(str(run_dir), location, "GMM") is None and record._FINGERPRINTS == {}
    record.write_record(str(run_dir), {"dataset": "GMM", "fingerprint": "0" * 16, "files": "another folder"})
    assert "now holds " + actual in jobs.other_data(str(run_dir), location, "GMM")

    # compare.py: the job's finished run is not counted, not collected, not launched again
    compare = _compare_script()
    monkeypatch.setattr(jobs, "launch", lambda *a, **k: (_ for _ in ()).throw(AssertionError("launched")))
    argv = ["--out", str(tmp_path / "out"), "--env", "bandit", "--task", "bandit", "--datasets", "GMM"]
    argv += ["--systems", "bc", "--seeds", "1", "--select-seeds", "1", "--override", f"vault_dir={small_vault_dir}"]
    common = compare.common_overrides(compare.parse_args(argv))
    job_dir = jobs.run_dir(jobs.Job("bc", "GMM", 0), common)
    os.makedirs(job_dir)
    (run_dir / "results.json").rename(os.path.join(job_dir, "results.json"))
    assert compare.main(argv) == 1  # the job did not finish on this data
    printed = capsys.readouterr().out
    assert "1 runs, 0 already finished, 1 finished on other data (not reused)" in printed
    assert "made from data with fingerprint 0000000000000000" in printed
    assert json.loads((tmp_path / "out" / "records.json").read_text()) == []
