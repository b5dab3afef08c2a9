"""The runner's logger: terminal lines (and wandb when asked), an in-memory evaluation
record for ``results.json``, and marl-eval JSON through the host's ``JsonWriter``."""

from __future__ import annotations

from typing import Any, Dict, List

from og_marl_omsd.host import BaseLogger


class EvaluationRecord:
    """Fans each ``write`` out to the given loggers and records evaluation logs (OG-MARL's
    logger interface; also the logger of OG-MARL's exported ``run.py``).

    Every write that carries ``evaluation/mean_episode_return`` is an evaluation: it is kept
    in ``evaluations`` and written to marl-eval JSON as ``evaluator/<metric>`` at the
    ``evaluation/training_steps`` step count.
    """

    def __init__(self, loggers: List[Any], json_writer: Any = None):
        self._loggers = loggers
        self._json_writer = json_writer
        self.evaluations: List[Dict[str, float]] = []

    def write(self, logs: Dict[str, Any], force: bool = False) -> None:
        for logger in self._loggers:
            logger.write(logs, force=force)
        if "evaluation/mean_episode_return" in logs:
            self._record(
                {key.split("/", 1)[1]: float(value) for key, value in logs.items() if key.startswith("evaluation/")}
            )

    def _record(self, record: Dict[str, float]) -> None:
        self.evaluations.append(record)
        if self._json_writer is not None:
            step = int(record.get("training_steps", len(self.evaluations) - 1))
            for key, value in record.items():
                if key != "training_steps":
                    self._json_writer.write(step, f"evaluator/{key}", value, len(self.evaluations) - 1)

    def write_absolute(self, metrics: Dict[str, float]) -> None:
        """marl-eval's ``absolute/<metric>`` entries (the final evaluation)."""
        if self._json_writer is not None:
            for key, value in metrics.items():
                self._json_writer.write(0, f"absolute/{key}", float(value))

    def close(self) -> None:
        for logger in self._loggers:
            close = getattr(logger, "close", None)
            if close is not None:
                close()
        if self._json_writer is not None:
            self._json_writer.close()


class RunLogger(EvaluationRecord, BaseLogger):
    """:class:`EvaluationRecord` that resumes: ``checkpoint_state`` and
    ``restore_checkpoint_state`` carry the evaluation record across a resumed run, and the
    evaluation environment's seeding state (``environment.checkpoint_state()`` when it has
    one), so a resumed run evaluates on the same episodes as an uninterrupted one.
    """

    def __init__(self, loggers: List[Any], json_writer: Any = None, environment: Any = None):
        super().__init__(loggers, json_writer)
        self._environment = environment  # the evaluation environment: its seeding state is checkpointed too

    def checkpoint_state(self) -> Dict[str, Any]:
        """What a resumed run needs to continue the record: the evaluations so far."""
        state: Dict[str, Any] = {"evaluations": [dict(record) for record in self.evaluations]}
        environment_state = getattr(self._environment, "checkpoint_state", None)
        if callable(environment_state):
            state["environment"] = environment_state()
        return state

    def restore_checkpoint_state(self, state: Dict[str, Any]) -> None:
        """Continue from ``checkpoint_state()``: the evaluations so far and their marl-eval JSON
        (not sent to the terminal or wandb again)."""
        if "environment" in state and callable(getattr(self._environment, "restore_checkpoint_state", None)):
            self._environment.restore_checkpoint_state(state["environment"])
        self.evaluations = []
        for record in state.get("evaluations", []):
            self._record({key: float(value) for key, value in record.items()})
