"""The pretrained parts of a finished run, checked on their own against its dataset.

A score-regularised system is only as good as its two pretrained parts, so when it trails a
simpler baseline the first questions are about them:

* **Critic**: does ``Q(s, a)`` at dataset states and actions track the discounted return
  that actually followed in the dataset? IQL's expectile critic estimates the best
  in-support return, so it should sit at or above the behaviour's return and rank pairs
  alike (a high correlation). The return that followed is cut at the episode's end while
  the critic bootstraps through time-limit truncations, so only steps with at least
  ``horizon`` steps left are compared (the cut then weighs at most ``discount**horizon``).
* **Behaviour model**: do joint actions sampled from it (the deterministic DDIM sampler)
  at held-out dataset states look like the dataset's actions there? Measured by the same
  joint-action support test as the comparison's OOD column
  (:mod:`og_marl_omsd.comparison.ood`; about 1% of the dataset's own actions fall out by
  construction) and by the per-dimension mean and spread. A factorised model (BRPO-Ind,
  BRPO-FAC) samples each agent from its marginal, so its joint samples may leave the
  support even when every marginal is right: the failure the paper's decomposition fixes.

The run's own pretrained cache entries are loaded (nothing is trained when they are there).
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Mapping, Optional

import numpy as np


def returns_to_go(rewards: np.ndarray, ends: np.ndarray, discount: float) -> np.ndarray:
    """Discounted return from every step to its episode's end, ``G_t = r_t + discount * G_{t+1}``
    within an episode; ``ends[t]`` marks the last step of an episode. Steps after the last
    end belong to no complete episode: ``nan``."""
    rewards = np.asarray(rewards, np.float64)
    ends = np.asarray(ends, bool)
    out = np.full(rewards.shape, np.nan)
    following = 0.0
    complete = False
    for t in range(len(rewards) - 1, -1, -1):
        if ends[t]:
            following, complete = 0.0, True
        if complete:
            following = rewards[t] + discount * following
            out[t] = following
    return out


def steps_left(ends: np.ndarray) -> np.ndarray:
    """Steps from each step to its episode's last step, that step included (``-1`` after the
    last end)."""
    ends = np.asarray(ends, bool)
    out = np.full(ends.shape, -1, np.int64)
    count = -1
    for t in range(len(ends) - 1, -1, -1):
        if ends[t]:
            count = 0
        if count >= 0:
            count += 1
            out[t] = count
    return out


def critic_check(
    q_function: Any,
    experience: Mapping[str, Any],
    reward_scale: float,
    discount: float,
    horizon: int = 500,
    max_pairs: int = 4096,
    seed: int = 0,
) -> Dict[str, float]:
    """``q_function(states (B, S), actions (B, N, A)) -> (B,)`` against the discounted scaled
    team-reward return that followed, at up to ``max_pairs`` steps with ``horizon`` steps left."""
    rewards = np.asarray(experience["rewards"], np.float64).mean(axis=-1) * reward_scale  # team reward, as trained
    ends = np.maximum(np.asarray(experience["terminals"]), np.asarray(experience["truncations"])).max(axis=-1) > 0
    returns = returns_to_go(rewards, ends, discount)
    eligible = np.flatnonzero(steps_left(ends) >= horizon)
    if eligible.size == 0:
        raise ValueError(f"No step has {horizon} steps left in its episode: lower the horizon.")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(eligible, size=min(max_pairs, eligible.size), replace=False))
    states = np.asarray(experience["infos"]["state"], np.float32)[chosen]
    actions = np.clip(np.asarray(experience["actions"], np.float32)[chosen], -1.0, 1.0)
    q = np.asarray(q_function(states, actions), np.float64).reshape(-1)
    g = returns[chosen]
    return {
        "pairs": int(chosen.size),
        "horizon": int(horizon),
        "discount": float(discount),
        "mean_q": float(q.mean()),
        "mean_return": float(g.mean()),
        "std_return": float(g.std()),
        "mean_q_minus_return": float((q - g).mean()),
        "correlation": float(np.corrcoef(q, g)[0, 1]) if q.std() > 0 and g.std() > 0 else float("nan"),
    }


def behaviour_check(sample: Any, support: Any, max_states: int = 2048, seed: int = 0) -> Dict[str, Any]:
    """Joint actions ``sample(states (B, S), rng) -> (B, N, A)`` at held-out dataset states,
    against the dataset's own actions there (``support``: a
    :class:`~og_marl_omsd.comparison.ood.JointActionSupport`)."""
    rng = np.random.default_rng(seed)
    count = min(max_states, len(support.holdout_states))
    index = np.sort(rng.choice(len(support.holdout_states), size=count, replace=False))
    states = support.holdout_states[index].astype(np.float32)
    data = support.holdout_actions[index]
    samples = np.asarray(sample(states, rng), np.float64).reshape(count, -1)
    return {
        "states": int(count),
        "ood_share_samples": support.ood_share(samples, states),
        "ood_share_dataset": support.ood_share(data, states),
        "mean_abs_gap": float(np.abs(samples.mean(axis=0) - data.mean(axis=0)).mean()),
        "std_samples": float(samples.std(axis=0).mean()),
        "std_dataset": float(data.std(axis=0).mean()),
        "saturated_samples": float(np.mean(np.abs(samples) > 0.99)),
        "saturated_dataset": float(np.mean(np.abs(data) > 0.99)),
    }


def pretrained_system(run_dir: str) -> Any:
    """The system of a finished run with its pretrained parts loaded from the run's cache, built
    by the runner's own steps from the run's ``config.yaml`` (so every part of the cache key is
    what the run had); also the dataset's arrays, the run's reward scale and the cache keys loaded."""
    from omegaconf import DictConfig, OmegaConf

    from og_marl_omsd.datasets.vaults import read_dataset
    from og_marl_omsd.runner import steps as run_steps
    from og_marl_omsd.runner.run import plan_run, prepare_dataset

    cfg = OmegaConf.load(os.path.join(run_dir, "config.yaml"))
    if not isinstance(cfg, DictConfig):
        raise ValueError(f"{run_dir}/config.yaml is not a run's config.")
    system_class, params, dataset, _ = plan_run(cfg)
    if not hasattr(system_class, "pretrain"):
        raise ValueError(f"{cfg.system.name} has no pretrained parts to check.")
    location = prepare_dataset(cfg, dataset)
    environment = run_steps.make_environment(cfg)
    data = run_steps.load_dataset(cfg, location, dataset, environment, params)
    system, buffer = run_steps.build_system_and_buffer(cfg, system_class, params, environment, _SilentLogger(), data)
    keys = run_steps.pretrain(system, buffer, cfg, data, cache_read_only=True)
    return system, read_dataset(location, dataset), data.reward_scale, keys


def diagnose_run(
    run_dir: str, support: Optional[Any] = None, denoising_steps: int = 20, horizon: int = 500
) -> Dict[str, Any]:
    """Both checks for one finished run (``support``: the dataset's, built here when not given)."""
    import tensorflow as tf

    from og_marl_omsd.comparison.ood import dataset_support

    system, experience, scale, keys = pretrained_system(run_dir)
    if system.behaviour_config.condition != "state":
        from og_marl_omsd.support.errors import UserError

        raise UserError(
            f"Run {run_dir} has behaviour models conditioned on the agents' observations "
            f"(system.behaviour_condition={system.behaviour_config.condition}); the diagnosis samples them at the "
            "dataset's states, so it covers state-conditioned runs only. Diagnose a run with behaviour_condition=state."
        )
    support = support if support is not None else dataset_support(experience)
    # min of the twin heads (IQL's value target); an independent critic's agents each estimate
    # the team return, so their mean is compared
    q_values = tf.function(lambda s, a: tf.reduce_mean(tf.minimum(*system.critic.q_values(s, a)), axis=-1))
    critic = critic_check(
        lambda s, a: q_values(tf.constant(s), tf.constant(a)).numpy(),
        experience,
        scale,
        float(system.critic_config.discount),
        horizon=horizon,
    )
    sample_fn = tf.function(lambda s, z: system.behaviour_model.sample(s, denoising_steps, z))

    def sample(states: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noise = rng.standard_normal((len(states), system.num_agents, system.action_dim)).astype(np.float32)
        return np.clip(sample_fn(tf.constant(states), tf.constant(noise)).numpy(), -1.0, 1.0)

    behaviour = behaviour_check(sample, support)
    behaviour["denoising_steps"] = int(denoising_steps)
    with open(os.path.join(run_dir, "results.json")) as handle:
        run_keys = json.load(handle).get("pretrained_cache_keys", {})
    return {
        "run_dir": run_dir,
        # Equal unless the cache's key version changed since the run: then the parts checked are
        # the current code's, trained on the same data with the same settings, not the run's own.
        "cache_keys": dict(keys),
        "run_cache_keys": dict(run_keys),
        "same_parts_as_run": dict(run_keys) == dict(keys),
        "critic": critic,
        "behaviour": behaviour,
        "critic_kind": system.critic_config.kind,
        "factorisation": system.behaviour_config.factorisation,
    }


class _SilentLogger:
    """Pretraining from the cache logs nothing worth keeping here."""

    def write(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass
