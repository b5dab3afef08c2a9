"""Standalone ``BaseOfflineSystem`` with OG-MARL's signature and training/evaluation loop."""

from __future__ import annotations

import time
from typing import Any, Dict, Optional

import numpy as np

from og_marl_omsd.models.losses import team_step_reward


class BaseOfflineSystem:
    """Offline system base: evaluation in the environment around a loop of ``train_step``.

    Matches ``og_marl.baselines.base.BaseOfflineSystem``: evaluate at step 0 and every
    ``evaluation_every`` steps with ``num_eval_episodes`` episodes, and with ten times as
    many after the last step; evaluation logs carry ``evaluation/mean_episode_return``.
    """

    def __init__(self, environment: Any, logger: Any):
        self.environment = environment  # only used for evaluation
        self.logger = logger
        self.agents = environment.agents
        self.training_step_ctr = 0

    def evaluate(self, num_eval_episodes: int = 32) -> Dict[str, float]:
        episode_returns = []
        for _ in range(num_eval_episodes):
            self.reset()
            observations, infos = self.environment.reset()
            done, episode_return = False, 0.0
            while not done:
                legal_actions = infos.get("legals") if isinstance(infos, dict) else None
                actions = self.select_actions(observations, legal_actions)
                observations, rewards, terminals, truncations, infos = self.environment.step(actions)
                episode_return += team_step_reward(rewards)
                done = all(terminals.values()) or all(truncations.values())
            episode_returns.append(episode_return)
        return {
            "evaluation/mean_episode_return": float(np.mean(episode_returns)),
            "evaluation/max_episode_return": float(np.max(episode_returns)),
            "evaluation/min_episode_return": float(np.min(episode_returns)),
        }

    def train(
        self,
        replay_buffer: Any,
        training_steps: int = int(1e5),
        evaluation_every: Optional[int] = 5000,
        num_eval_episodes: int = 32,
    ) -> None:
        for _ in range(training_steps):
            if evaluation_every is not None and self.training_step_ctr % evaluation_every == 0:
                print("EVALUATION")
                logs = self.evaluate(num_eval_episodes)
                self.logger.write(logs | {"evaluation/training_steps": self.training_step_ctr}, force=True)
            start = time.time()
            experience = replay_buffer.sample()
            time_to_sample = time.time() - start
            start = time.time()
            train_logs = self.train_step(experience)
            time_train_step = time.time() - start
            self.logger.write(
                {
                    **train_logs,
                    "training_steps": self.training_step_ctr,
                    "time_for_sampling": time_to_sample,
                    "time_for_training_step": time_train_step,
                    "training_sps": 1.0 / max(time_train_step + time_to_sample, 1e-9),
                }
            )
            self.training_step_ctr += 1
        print("FINAL EVALUATION")
        logs = self.evaluate(10 * num_eval_episodes)
        self.logger.write(logs | {"evaluation/training_steps": self.training_step_ctr}, force=True)

    def reset(self) -> None:
        """Called at the start of each evaluation episode."""

    def select_actions(self, observations: Dict[str, np.ndarray], legal_actions: Any) -> Dict[str, np.ndarray]:
        raise NotImplementedError

    def train_step(self, experience: Dict[str, Any]) -> Dict[str, Any]:
        raise NotImplementedError
