"""runner/logger.py: a run's marl-eval ``metrics.json`` (run_logger + the runner's naming), concatenated across
runs and read the way marl-eval reads them, without marl-eval (its pins do not install beside TF); a killed
run with a damaged metrics.json rebuilds it and resumes to the reference.

The readers below follow marl-eval's ``concatenate_json_files`` (every ``*.json`` below a
directory; a seed already present is renumbered, not refused), ``data_process_pipeline``
(lower-cased keys, ``mean_<metric>`` per step, the evaluation interval as the mean difference
of consecutive ``step_count`` values counted from 0) and ``create_matrices_for_rliable``
(tasks, algorithms and runs taken from the first task's first algorithm; a (runs x tasks)
matrix per algorithm of each absolute metric).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal

import numpy as np
import pytest

from conftest import (
    SMALL_RUN,
    assert_same_results,
    dead_pid,
    finish_run,
    interrupt_at,
    results_of,
    run_config,
)


# ---------------------------------------------------------------- marl-eval's reading, re-implemented
def concatenate(directory):
    merged = {}
    for root, _, names in os.walk(directory):
        for name in names:
            if name.endswith(".json"):
                with open(os.path.join(root, name)) as handle:
                    data = json.load(handle)
                for env, tasks in data.items():
                    for task, algorithms in tasks.items():
                        for algorithm, seeds in algorithms.items():
                            target = merged.setdefault(env, {}).setdefault(task, {}).setdefault(algorithm, {})
                            for seed, run in seeds.items():
                                while seed in target:  # marl-eval: a clash becomes the next seed number
                                    prefix, number = seed.rsplit("_", 1)
                                    seed = f"{prefix}_{int(number) + 1}"
                                target[seed] = run
    return merged


def lower_keys(tree):
    return {key.lower(): lower_keys(value) for key, value in tree.items()} if isinstance(tree, dict) else tree


def process(raw):
    data = lower_keys(raw)
    intervals = {}
    for env, tasks in data.items():
        differences = []
        for algorithms in tasks.values():
            for runs in algorithms.values():
                for steps in runs.values():
                    previous = 0
                    for metrics in steps.values():
                        for metric in list(metrics):
                            if metric == "step_count":
                                differences.append(metrics[metric] - previous)
                                previous = metrics[metric]
                            else:
                                metrics[f"mean_{metric}"] = float(np.mean(metrics[metric]))
        intervals[env] = round(float(np.mean(differences)))
    data["extra"] = {"evaluation_interval": intervals}
    return data


def rliable_matrices(processed, env):
    data = processed[env]
    tasks = list(data)
    algorithms = list(data[tasks[0]])
    runs = list(data[tasks[0]][algorithms[0]])
    metrics = [metric for metric in data[tasks[0]][algorithms[0]][runs[0]]["absolute_metrics"] if metric[:5] == "mean_"]
    return {
        metric: {
            algorithm: np.array(
                [[np.mean(data[task][algorithm][run]["absolute_metrics"][metric]) for task in tasks] for run in runs]
            )
            for algorithm in algorithms
        }
        for metric in metrics
    }


# ---------------------------------------------------------------- runs
class ThreeStepEnvironment:
    """Two agents, episodes of three steps, rewards drawn from a seeded generator around ``offset``."""

    agents = ["agent_0", "agent_1"]

    def __init__(self, seed, offset=0.0):
        self.random = np.random.default_rng(seed)
        self.offset = offset
        self.t = 0

    def reset(self):
        self.t = 0
        return {agent: np.zeros(1) for agent in self.agents}, {}

    def step(self, actions):
        self.t += 1
        rewards = {agent: self.offset + float(self.random.normal()) for agent in self.agents}
        done = {agent: self.t == 3 for agent in self.agents}
        return {agent: np.zeros(1) for agent in self.agents}, rewards, done, dict(done), {}


def play(environment, episodes):
    """OG-MARL's evaluation loop: the mean over episodes of the summed mean-over-agents rewards."""
    returns = []
    for _ in range(episodes):
        environment.reset()
        total, done = 0.0, False
        while not done:
            _, rewards, terminals, truncations, _ = environment.step({})
            total += float(np.mean(list(rewards.values())))
            done = all(terminals.values()) or all(truncations.values())
        returns.append(total)
    return {
        "evaluation/mean_episode_return": float(np.mean(returns)),
        "evaluation/max_episode_return": float(np.max(returns)),
        "evaluation/min_episode_return": float(np.min(returns)),
    }


def write_run(run_dir, dataset, beta, seed, episodes=4, every=10, evaluations=3):
    """One run's metrics.json through the runner's logger: evaluations at 0, every, ..., then the
    final one (10x episodes), as OG-MARL's ``train`` loop makes them."""
    from og_marl_omsd.runner.logger import EpisodeReturns
    from og_marl_omsd.runner.steps import RunPlan, make_run_logger

    cfg = run_config("system=omsd", "env=bandit", f"dataset={dataset}", f"system.beta={beta}", f"seed={seed}")
    environment = EpisodeReturns(ThreeStepEnvironment(seed, offset=beta + (10.0 if dataset == "Uniform" else 0.0)))
    logger = make_run_logger(cfg, RunPlan(object, {"beta": beta}, dataset, str(run_dir)), environment)
    for index in range(evaluations):
        logger.write(play(environment, episodes) | {"evaluation/training_steps": index * every}, force=True)
    final = play(environment, 10 * episodes)
    logger.write(final | {"evaluation/training_steps": evaluations * every}, force=True)
    logger.write_absolute({key.split("/", 1)[1]: value for key, value in final.items()})
    logger.close()
    return logger


def test_runs_of_two_datasets_and_two_betas_stay_apart_when_concatenated(tmp_path):
    collected = tmp_path / "collected"
    for dataset in ("GMM", "Uniform"):
        for beta in (0.1, 0.5):
            for seed in (0, 1):
                run_dir = tmp_path / "runs" / f"{dataset}-{beta}-{seed}"
                write_run(run_dir, dataset, beta, seed)
                target = collected / f"{dataset}-{beta}-{seed}"
                target.mkdir(parents=True)
                shutil.copy(run_dir / "metrics.json", target / "metrics.json")
    merged = concatenate(collected)
    # Four algorithm-task pairs, each with its own two seeds (none renumbered as extra seeds).
    pairs = {
        (task, algorithm): sorted(seeds)
        for task, algorithms in merged["bandit"].items()
        for algorithm, seeds in algorithms.items()
    }
    assert pairs == {
        (task, algorithm): ["seed_0", "seed_1"]
        for task in ("bandit-GMM", "bandit-Uniform")
        for algorithm in ("omsd@beta=0.1", "omsd@beta=0.5")
    }
    processed = process(merged)
    assert processed["extra"]["evaluation_interval"]["bandit"] == 10  # the true interval, not 10 * 3/4
    run = processed["bandit"]["bandit-gmm"]["omsd@beta=0.1"]["seed_0"]
    assert [run[f"step_{i}"]["step_count"] for i in range(3)] == [10, 20, 30]
    assert len(run["step_0"]["episode_return"]) == 4 and len(run["step_2"]["episode_return"]) == 40
    assert run["step_0"]["mean_episode_return"] == pytest.approx(run["step_0"]["mean_mean_episode_return"])
    assert np.std(run["step_0"]["episode_return"]) > 0  # the spread is kept
    assert len(run["absolute_metrics"]["episode_return"]) == 40
    matrices = rliable_matrices(processed, "bandit")
    tasks = list(processed["bandit"])
    for algorithm in ("omsd@beta=0.1", "omsd@beta=0.5"):
        matrix = matrices["mean_episode_return"][algorithm]
        assert matrix.shape == (2, 2)  # runs x tasks
        for j, task in enumerate(tasks):
            for i, seed in enumerate(("seed_0", "seed_1")):
                expected = processed["bandit"][task][algorithm][seed]["absolute_metrics"]["episode_return"]
                assert matrix[i, j] == pytest.approx(np.mean(expected))
    # Each cell is its own run: returns sit around beta (+10 for Uniform), 3 steps an episode.
    uniform = matrices["mean_episode_return"]["omsd@beta=0.5"][:, tasks.index("bandit-uniform")]
    gmm = matrices["mean_episode_return"]["omsd@beta=0.1"][:, tasks.index("bandit-gmm")]
    assert np.all(np.abs(uniform - 3 * 10.5) < 1.5) and np.all(np.abs(gmm - 3 * 0.1) < 1.5)


def test_the_run_names_carry_the_settings_given_and_never_commas():
    from og_marl_omsd.runner.naming import split_algorithm_name
    from og_marl_omsd.upstream.og_marl_run import marl_eval_names

    cfg = run_config("system=omsd", "env=bandit", "system.actor_hidden_sizes=[32,32]", "training_steps=50", "seed=3")
    env, task, algorithm = marl_eval_names(cfg, "GMM")  # compared with what system=omsd env=bandit composes to
    assert (env, task) == ("bandit", "bandit-GMM")
    assert algorithm == "omsd@beta=0.5@actor_hidden_sizes=32x32@training_steps=50"
    assert split_algorithm_name(algorithm) == ("omsd", "")
    assert marl_eval_names(run_config("system=omsd", "env=bandit", "runs_root=x", "dataset=GMM"), "GMM")[2] == (
        "omsd@beta=0.5"  # where it runs and which dataset (the task level) are no settings
    )
    quick = run_config("system=omsd", "env=mamujoco", "task.vault_config=2halfcheetah-quick")
    assert marl_eval_names(quick, "Medium")[1] == "2halfcheetah-Medium@vault_config=2halfcheetah-quick"
    # A system without beta (an env preset's beta it does not take is no setting of it).
    assert marl_eval_names(cfg, "GMM", params={"learning_rate": 1e-3})[2] == "omsd@training_steps=50"


def test_a_resumed_record_writes_the_same_metrics(tmp_path):
    from og_marl_omsd.runner.logger import MarlEvalWriter, RunLogger

    first = write_run(tmp_path / "first", "GMM", 0.1, 0)
    state = json.loads(json.dumps(first.checkpoint_state()))  # as a checkpoint stores it
    resumed = RunLogger([], MarlEvalWriter(str(tmp_path / "second"), "omsd@beta=0.1", "bandit-GMM", "bandit", 0))
    resumed.restore_checkpoint_state(state)
    resumed.write_absolute({key: value for key, value in first.evaluations[-1].items() if key != "training_steps"})
    original = json.loads((tmp_path / "first" / "metrics.json").read_text())
    again = json.loads((tmp_path / "second" / "metrics.json").read_text())
    assert again == original


@pytest.mark.slow
def test_killed_run_with_damaged_metrics_resumes_to_the_reference(tmp_path, small_vault_dir, reference):
    expected, reference_dir, _ = reference
    run_dir = tmp_path / "run"
    overrides = [
        *SMALL_RUN,
        f"vault_dir={small_vault_dir}",
        f"run_dir={run_dir}",
        f"pretrained_dir={tmp_path / 'cache'}",
    ]
    code, out, err = interrupt_at(overrides, "[checkpoint] actors step 5/", tmp_path)
    assert code == -signal.SIGKILL, out[-2000:] + err[-2000:]
    metrics = run_dir / "metrics.json"
    metrics.write_text(metrics.read_text()[: len(metrics.read_text()) // 2])  # a write cut short (old in-place writer)
    (run_dir / "config.yaml").write_text("system: [unclosed")  # damaged too: rebuilt
    pid = dead_pid()
    leftovers = [run_dir / f".metrics.json.tmp-{pid}", run_dir / f".results.json.tmp-{pid}"]
    for leftover in leftovers:
        leftover.write_text("{")
    code, out, err = finish_run(overrides, tmp_path)
    assert code == 0, out[-2000:] + err[-3000:]
    assert "metrics.json was damaged" in out and re.search(r"\[resume\] resuming actors from step (5|10)", out)
    assert_same_results(results_of(run_dir), expected)
    assert json.loads(metrics.read_text()) == json.loads((reference_dir / "metrics.json").read_text())
    assert not any(leftover.exists() for leftover in leftovers)
    assert "seed: 3" in (run_dir / "config.yaml").read_text()
