"""The runner's logger: terminal lines (and wandb when asked), an in-memory evaluation
record for ``results.json``, and marl-eval JSON (:class:`MarlEvalWriter`: per-episode returns, a
step axis that gives marl-eval the true evaluation interval)."""

from __future__ import annotations

from typing import Any, Dict, List

from og_marl_omsd.host import BaseLogger

# The episode returns, marl-eval JSON and evaluation record: defined in og_marl_run (exported as og_marl/run.py).
from og_marl_omsd.upstream.og_marl_run import (  # noqa: F401 (re-exported)
    EpisodeReturns,
    EvaluationRecord,
    MarlEvalWriter,
)


class RunLogger(EvaluationRecord, BaseLogger):
    """:class:`EvaluationRecord` that resumes: ``checkpoint_state`` and
    ``restore_checkpoint_state`` carry the evaluation record across a resumed run, and the
    evaluation environment's seeding state (``environment.checkpoint_state()`` when it has
    one), so a resumed run evaluates on the same episodes as an uninterrupted one.
    """

    def __init__(self, loggers: List[Any], json_writer: Any = None, environment: Any = None):
        super().__init__(
            loggers, json_writer, episodes=environment if isinstance(environment, EpisodeReturns) else None
        )
        self._environment = environment  # the evaluation environment: its seeding state is checkpointed too

    def checkpoint_state(self) -> Dict[str, Any]:
        """What a resumed run needs to continue the record: the evaluations so far."""
        state: Dict[str, Any] = {
            "evaluations": [dict(record) for record in self.evaluations],
            "episode_returns": [list(returns) for returns in self.episode_returns],
        }
        environment_state = getattr(self._environment, "checkpoint_state", None)
        if callable(environment_state):
            state["environment"] = environment_state()
        return state

    def restore_checkpoint_state(self, state: Dict[str, Any]) -> None:
        """Continue from ``checkpoint_state()``: the evaluations so far and their marl-eval JSON
        (not sent to the terminal or wandb again)."""
        if "environment" in state and callable(getattr(self._environment, "restore_checkpoint_state", None)):
            self._environment.restore_checkpoint_state(state["environment"])
        self.evaluations, self.episode_returns = [], []
        episode_returns = list(state.get("episode_returns", []))
        for index, record in enumerate(state.get("evaluations", [])):
            returns = [float(value) for value in episode_returns[index]] if index < len(episode_returns) else []
            self._record({key: float(value) for key, value in record.items()}, returns)
