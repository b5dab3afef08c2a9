"""The runner's logger: terminal lines (and wandb when asked), an in-memory evaluation
record for ``results.json``, and marl-eval JSON (:class:`MarlEvalWriter`: per-episode returns, a
step axis that gives marl-eval the true evaluation interval)."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

import numpy as np

from og_marl_omsd.host import BaseLogger
from og_marl_omsd.support.files import write_json


class EpisodeReturns:
    """An environment that records the return of every episode played on it (the team reward
    of a step is the agents' mean, as OG-MARL's ``evaluate`` sums it); everything else is the
    wrapped environment's. :meth:`take` hands over the finished episodes' returns."""

    def __init__(self, environment: Any):
        self._environment = environment
        self._current: Optional[float] = None
        self._finished: List[float] = []

    def reset(self, *args: Any, **kwargs: Any) -> Any:
        self._current = 0.0  # an episode left unfinished is not counted
        return self._environment.reset(*args, **kwargs)

    def step(self, actions: Any) -> Any:
        result = self._environment.step(actions)
        rewards, terminals, truncations = result[1], result[2], result[3]
        if self._current is not None:
            self._current += float(np.mean(list(rewards.values())))
            if all(terminals.values()) or all(truncations.values()):
                self._finished.append(self._current)
                self._current = None
        return result

    def take(self) -> List[float]:
        """The returns of the episodes finished since the last call."""
        finished, self._finished = self._finished, []
        return finished

    def __getattr__(self, name: str) -> Any:
        environment = self.__dict__.get("_environment")
        if environment is None:
            raise AttributeError(name)
        return getattr(environment, name)


class MarlEvalWriter:
    """A run's ``metrics.json`` in marl-eval's format:
    ``{env: {task: {algorithm: {seed_N: {step_i: {step_count, metric: [values]}, absolute_metrics: {...}}}}}}``.

    A metric's value is a list: one value, or every evaluation episode's return
    (``episode_return``). Rewritten atomically after every write; a file that is not a JSON
    object is started afresh (a resumed run writes its evaluations back)."""

    def __init__(self, path: str, algorithm_name: str, task_name: str, environment_name: str, seed: int):
        self.file = os.path.join(path, "metrics.json")
        os.makedirs(path, exist_ok=True)
        data: Any = None
        if os.path.exists(self.file):
            try:
                with open(self.file) as handle:
                    data = json.load(handle)
            except (OSError, ValueError) as error:
                data = error
            if not isinstance(data, dict):
                print(
                    f"[resume] {self.file} was damaged ({type(data).__name__}); rebuilding it (a resumed run writes "
                    "its evaluations back into it)",
                    flush=True,
                )
        self.data: Dict[str, Any] = data if isinstance(data, dict) else {}
        self.run_data: Dict[str, Any] = {"absolute_metrics": {}}
        algorithms = self.data.setdefault(environment_name, {}).setdefault(task_name, {})
        algorithms.setdefault(algorithm_name, {})[f"seed_{seed}"] = self.run_data
        write_json(self.file, self.data, indent=4)

    def write(self, timestep: int, key: str, value: Any, evaluation_step: Optional[int] = None) -> None:
        prefix, _, metric = key.partition("/")
        values = [float(item) for item in value] if isinstance(value, (list, tuple)) else [float(value)]
        if prefix == "evaluator":
            self.run_data.setdefault(f"step_{evaluation_step}", {}).update(
                {"step_count": int(timestep), metric: values}
            )
        elif prefix == "absolute":
            self.run_data["absolute_metrics"][metric] = values
        write_json(self.file, self.data, indent=4)

    def close(self) -> None:
        return


class EvaluationRecord:
    """Fans each ``write`` out to the given loggers and records evaluation logs (OG-MARL's
    logger interface; also the logger of OG-MARL's exported ``run.py``).

    Every write that carries ``evaluation/mean_episode_return`` is an evaluation: it is kept
    in ``evaluations`` (with its episodes' returns in ``episode_returns`` when ``episodes``,
    an :class:`EpisodeReturns` environment, is given) and written to marl-eval JSON as
    ``evaluator/<metric>`` at the ``evaluation/training_steps`` step count, the episodes'
    returns as ``evaluator/episode_return``. The evaluation before any training (step 0) is
    left out of marl-eval JSON: marl-eval takes the evaluation interval from the step counts
    (their mean difference, counted from 0), so its steps must be ``I, 2I, ...``.
    """

    def __init__(self, loggers: List[Any], json_writer: Any = None, episodes: Any = None):
        self._loggers = loggers
        self._json_writer = json_writer
        self._episodes = episodes
        self.evaluations: List[Dict[str, float]] = []
        self.episode_returns: List[List[float]] = []
        self._marl_eval_steps = 0

    def write(self, logs: Dict[str, Any], force: bool = False) -> None:
        for logger in self._loggers:
            logger.write(logs, force=force)
        if "evaluation/mean_episode_return" in logs:
            self._record(
                {key.split("/", 1)[1]: float(value) for key, value in logs.items() if key.startswith("evaluation/")},
                self._episodes.take() if self._episodes is not None else [],
            )

    def _record(self, record: Dict[str, float], returns: Optional[List[float]] = None) -> None:
        if not self.evaluations:
            self._marl_eval_steps = 0
        self.evaluations.append(record)
        self.episode_returns.append(list(returns or []))
        step = int(record.get("training_steps", len(self.evaluations) - 1))
        if self._json_writer is None or step <= 0:
            return
        for key, value in record.items():
            if key != "training_steps":
                self._json_writer.write(step, f"evaluator/{key}", value, self._marl_eval_steps)
        if returns:
            self._json_writer.write(step, "evaluator/episode_return", list(returns), self._marl_eval_steps)
        self._marl_eval_steps += 1

    def write_absolute(self, metrics: Dict[str, float]) -> None:
        """marl-eval's ``absolute/<metric>`` entries (the final evaluation, with its episodes' returns)."""
        if self._json_writer is not None:
            for key, value in metrics.items():
                self._json_writer.write(0, f"absolute/{key}", float(value))
            if self.episode_returns and self.episode_returns[-1]:
                self._json_writer.write(0, "absolute/episode_return", list(self.episode_returns[-1]))

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
