"""MATD3's hyperparameters and budget: the ``behaviour`` section of a vault config."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional, Tuple


@dataclasses.dataclass
class MATD3Config:
    """MATD3 hyperparameters and budget (the ``behaviour`` section of a vault config)."""

    total_steps: int = 300_000
    warmup_steps: int = 10_000
    batch_size: int = 100
    hidden_sizes: Tuple[int, ...] = (256, 256)
    actor_learning_rate: float = 1e-3
    critic_learning_rate: float = 1e-3
    discount: float = 0.99
    target_update_rate: float = 0.005
    policy_delay: int = 2
    exploration_noise: float = 0.1
    target_noise: float = 0.2
    target_noise_clip: float = 0.5
    train_every: int = 50  # env steps between training calls
    # gradient updates per env step (update-to-data ratio): each training call does
    # train_every * updates_per_step updates (an integer). Below 1 the learner improves more
    # slowly per env step, so its replay up to Medium (Medium-Replay) holds more transitions.
    updates_per_step: float = 1.0
    evaluate_every: int = 5_000
    evaluation_episodes: int = 5
    checkpoint_every: int = 20_000
    target_return: Optional[float] = None  # stop early once an evaluation reaches it

    @classmethod
    def from_dict(cls, values: Optional[Dict[str, Any]]) -> "MATD3Config":
        values = dict(values or {})
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown MATD3 settings {unknown}; valid: {', '.join(sorted(known))}.")
        if "hidden_sizes" in values:
            values["hidden_sizes"] = tuple(int(size) for size in values["hidden_sizes"])
        config = cls(**values)
        if config.total_steps <= 0 or config.batch_size <= 0 or config.train_every <= 0:
            raise ValueError("total_steps, batch_size and train_every must be positive.")
        if config.evaluate_every <= 0 or config.checkpoint_every <= 0:
            raise ValueError("evaluate_every and checkpoint_every must be positive.")
        updates = config.train_every * config.updates_per_step
        if updates < 1 or abs(updates - round(updates)) > 1e-9:
            raise ValueError(
                f"train_every * updates_per_step must be a positive integer (the updates of one training "
                f"call); got {config.train_every} * {config.updates_per_step} = {updates:g}."
            )
        return config

    def to_dict(self) -> Dict[str, Any]:
        values = dataclasses.asdict(self)
        values["hidden_sizes"] = list(self.hidden_sizes)
        return values
