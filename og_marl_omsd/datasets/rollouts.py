"""Whole episodes of a batch policy in MaMuJoCo-like environments, played in lockstep: the
MATD3 evaluations, the Random dataset and the datasets of a frozen policy."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np


def run_episodes(
    make_env: Callable[[int], Any],
    policy: Callable[[np.ndarray], np.ndarray],
    num_episodes: int,
    seed: int,
    noise: float = 0.0,
    rng: Optional[np.random.Generator] = None,
    num_envs: int = 10,
    record: bool = False,
    progress: Optional[Callable[[int], None]] = None,
) -> Tuple[np.ndarray, Optional[Dict[str, Any]]]:
    """Play ``num_episodes`` whole episodes with ``policy`` (+ Gaussian ``noise``, clipped).

    Episodes run ``num_envs`` at a time in lockstep so that the policy sees a batch; episode
    ``e`` is played in an environment made by ``make_env(seed + e)`` (reset 0 of that env),
    so the result depends only on the arguments. Returns the team return of each episode and,
    with ``record``, the experience of all episodes in order as OG-MARL arrays with a leading
    time axis (observations, actions, rewards, terminals, truncations, infos.state).

    A policy with ``takes_context = True`` is also given, per row, the episode's identifier
    (``seed + e``, unique across calls that use disjoint seeds) and the time step within it
    (the team-switch policy draws its latents from them).
    """
    rng = rng if rng is not None else np.random.default_rng(seed)
    returns = np.zeros(num_episodes)
    recorded: List[Dict[str, np.ndarray]] = [None] * num_episodes  # type: ignore[list-item]
    for start in range(0, num_episodes, num_envs):
        episode_ids = list(range(start, min(start + num_envs, num_episodes)))
        envs = [make_env(seed + e) for e in episode_ids]
        _play_lockstep(envs, episode_ids, policy, noise, rng, returns, recorded if record else None, progress, seed)
        for env in envs:
            env.close()
    if not record:
        return returns, None
    return returns, _concatenated(recorded)


RECORDED_KEYS = ("observations", "actions", "rewards", "terminals", "truncations", "state")


def _play_lockstep(
    envs: List[Any],
    episode_ids: List[int],
    policy: Callable[[np.ndarray], np.ndarray],
    noise: float,
    rng: np.random.Generator,
    returns: np.ndarray,
    recorded: Optional[List[Dict[str, np.ndarray]]],
    progress: Optional[Callable[[int], None]],
    seed: int = 0,
) -> None:
    """Play one episode in each of ``envs`` (episode ``episode_ids[i]`` in ``envs[i]``) until all
    have ended; adds each episode's team return to ``returns`` and, when ``recorded`` is given,
    stores its steps there."""
    from og_marl_omsd.models.losses import team_reward  # TensorFlow is imported on first use only

    agents = envs[0].agents
    first = [env.reset() for env in envs]
    observations = [np.stack([obs[agent] for agent in agents]) for obs, _ in first]
    states = [info["state"] for _, info in first]
    active = list(range(len(envs)))
    lengths = [0] * len(envs)
    buffers: List[Dict[str, List[Any]]] = [{key: [] for key in RECORDED_KEYS} for _ in envs]
    while active:
        batch = np.stack([observations[i] for i in active])  # (B, N, O)
        if getattr(policy, "takes_context", False):
            episodes = np.array([seed + episode_ids[i] for i in active])
            actions = policy(batch, episodes=episodes, steps=np.array([lengths[i] for i in active]))  # type: ignore[call-arg]
        else:
            actions = policy(batch)  # (B, N, A)
        if noise > 0:
            actions = actions + noise * rng.standard_normal(actions.shape)
        actions = np.clip(actions, -1.0, 1.0).astype("float32")
        still_active = []
        for row, i in enumerate(active):
            next_obs, rewards, terminals, truncations, info = envs[i].step(
                {agent: actions[row, n] for n, agent in enumerate(agents)}
            )
            reward = np.array([rewards[agent] for agent in agents], "float32")
            terminal = np.array([terminals[agent] for agent in agents], "float32")
            truncation = np.array([truncations[agent] for agent in agents], "float32")
            returns[episode_ids[i]] += float(team_reward(reward))
            lengths[i] += 1
            if recorded is not None:
                step = (observations[i], actions[row], reward, terminal, truncation, states[i])
                for key, value in zip(RECORDED_KEYS, step):
                    buffers[i][key].append(value)
            observations[i] = np.stack([next_obs[agent] for agent in agents])
            states[i] = info["state"]
            if terminal.any() or truncation.any():
                if recorded is not None:
                    recorded[episode_ids[i]] = {key: np.stack(value) for key, value in buffers[i].items()}
                if progress is not None:
                    progress(lengths[i])
            else:
                still_active.append(i)
        active = still_active


def _concatenated(recorded: List[Dict[str, np.ndarray]]) -> Dict[str, Any]:
    """Recorded episodes, in order, as OG-MARL experience arrays (float32, leading time axis)."""
    experience: Dict[str, Any] = {
        key: np.concatenate([episode[key] for episode in recorded]).astype("float32")
        for key in ("observations", "actions", "rewards", "terminals", "truncations")
    }
    experience["infos"] = {"state": np.concatenate([episode["state"] for episode in recorded]).astype("float32")}
    return experience
