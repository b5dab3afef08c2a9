"""A team with several coordinated behaviours: the joint policy of the coordination datasets.

A team of ``N`` agents has ``K`` joint behaviours (``K`` independently trained MATD3 teams).
At every step each agent acts with one of them, chosen by a latent that is redrawn every
``switch_every`` steps of the episode:

- ``shared_switch=True`` (the coordinated dataset): one latent for the whole team, so all
  agents play the same behaviour at the same time (a team that switches between rehearsed
  plays). Given the state, agent 1's action tells which play is on, and agent 2's action
  depends on it: a product of per-agent behaviour models puts mass on mixed joint actions
  that no play takes; a sequential model ``mu(a_2 | s, a_1)`` does not.
- ``shared_switch=False`` (the matched control): the same behaviours, the same switch
  period, but each agent draws its own latent; given the state, the agents' actions are
  independent, exactly as in the single-policy datasets.

The latents are a pure function of ``(seed, episode, step // switch_every, agent)`` (a
SplitMix64 hash), so a dataset does not depend on batching, resumes or the order in which
episodes are played.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser, elementwise on uint64 (wraps modulo 2**64)."""
    with np.errstate(over="ignore"):
        z = (values + np.uint64(0x9E3779B97F4A7C15)) & _MASK
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
        return z ^ (z >> np.uint64(31))


def switch_latents(
    seed: int, episodes: np.ndarray, steps: np.ndarray, num_agents: int, num_teams: int, switch_every: int, shared: bool
) -> np.ndarray:
    """The behaviour index ``(B, N)`` each agent plays at ``steps`` of ``episodes``.

    Args:
        seed: the dataset's seed.
        episodes: ``(B,)`` episode identifiers (non-negative integers).
        steps: ``(B,)`` time steps within those episodes.
        num_agents: ``N``.
        num_teams: ``K``, the number of joint behaviours.
        switch_every: the latent is redrawn every this many steps (>= 1).
        shared: one latent for all agents (coordinated) or one per agent (control).
    """
    if switch_every < 1 or num_teams < 1:
        raise ValueError(f"switch_every and num_teams must be >= 1, got {switch_every} and {num_teams}.")
    episodes = np.asarray(episodes, np.uint64)[:, None]
    blocks = (np.asarray(steps, np.int64) // int(switch_every)).astype(np.uint64)[:, None]
    agents = np.zeros((1, num_agents), np.uint64) if shared else np.arange(1, num_agents + 1, dtype=np.uint64)[None]
    with np.errstate(over="ignore"):
        key = _splitmix64(np.uint64(seed) * np.uint64(0x100000001B3) + episodes)
        key = _splitmix64(key ^ (blocks * np.uint64(0x9E3779B97F4A7C15)))
        key = _splitmix64(key + agents)
    return (key % np.uint64(num_teams)).astype(np.int64)


class TeamSwitchPolicy:
    """A joint policy that plays, per agent, the behaviour its latent names (see the module
    docstring). Called by :func:`og_marl_omsd.datasets.rollouts.run_episodes` with the
    episodes' identifiers and time steps (``takes_context``)."""

    takes_context = True

    def __init__(
        self,
        behaviours: Sequence[Callable[[np.ndarray], np.ndarray]],
        switch_every: int,
        shared_switch: bool,
        seed: int,
    ):
        if len(behaviours) < 2:
            raise ValueError(f"A team switch needs at least 2 behaviours, got {len(behaviours)}.")
        if int(switch_every) < 1:
            raise ValueError(f"switch_every must be >= 1, got {switch_every}.")
        self.behaviours = list(behaviours)
        self.switch_every = int(switch_every)
        self.shared_switch = bool(shared_switch)
        self.seed = int(seed)

    def __call__(self, observations: np.ndarray, episodes: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """Joint actions ``(B, N, A)`` for observations ``(B, N, O)`` at ``steps`` of ``episodes``."""
        candidates = np.stack([behaviour(observations) for behaviour in self.behaviours])  # (K, B, N, A)
        batch, num_agents = observations.shape[:2]
        latents = switch_latents(
            self.seed, episodes, steps, num_agents, len(self.behaviours), self.switch_every, self.shared_switch
        )  # (B, N)
        rows = np.arange(batch)[:, None]
        columns = np.arange(num_agents)[None, :]
        return candidates[latents, rows, columns]
