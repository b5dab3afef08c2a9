"""Progress of long stages: step k/N, steps/s and an ETA, for a terminal and for log files.

One call per logging point::

    bar = progress.Progress("critic_joint", total=20000, start=resumed_step)
    for step in ...:
        logs = train_step()
        bar.update(step, logs)          # every step, or every K steps: ``step`` is absolute
    bar.close()

- In a terminal (stdout is a TTY) it draws a tqdm bar with the stage's losses and the
  whole run's ETA as postfix (a plain line at most every 0.5 s without tqdm).
- Otherwise (a cluster job's log file, a pipe, a captured test) it prints a plain line at
  most every ``every`` seconds (default 30; ``logger.progress_every=`` of the runner or
  ``OG_MARL_OMSD_PROGRESS_EVERY``) and always at the last step::

    [critic_joint] 12000/20000 (60%) | 812 steps/s | ETA 0:00:10 | elapsed 0:00:15 | q_loss 0.01 | run 45% ETA ~0:06:12

``OG_MARL_OMSD_PROGRESS`` forces a mode: ``bar``, ``plain`` or ``off``.

A run announces its stages with :func:`plan_run` (their step budgets, in order); each
stage's :class:`Progress` named after a planned stage (``critic_joint`` -> ``critic``)
then also reports the run's completion and ETA. Stages not started when a later one
starts (loaded from the pretrained cache) count as done. The run ETA times the stages still
to come from the current stage's speed scaled by their costs per step (``plan_run(costs=)``,
from the network shapes) plus a start-up as long as the current stage's (compilation), so it is
an estimate (marked ``~``); evaluation episodes are not in it. The first plain line waits for
a measured speed (the first call of a compiled step includes its compilation, which would make
every ETA far too long).

Metric values may be tensors: they are converted only when a line is printed, so a step
loop never waits for the device because of this module.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, TextIO

MODE_ENV_VAR = "OG_MARL_OMSD_PROGRESS"
EVERY_ENV_VAR = "OG_MARL_OMSD_PROGRESS_EVERY"
_settings: Dict[str, Any] = {"every": None, "mode": None}


def configure(every: Optional[float] = None, mode: Optional[str] = None) -> None:
    """Set the plain-line period (seconds) and/or the mode (``auto``, ``bar``, ``plain``, ``off``)."""
    if every is not None:
        if float(every) < 0:
            raise ValueError(f"progress period must be >= 0 seconds, got {every}")
        _settings["every"] = float(every)
    if mode is not None:
        if mode not in ("auto", "bar", "plain", "off"):
            raise ValueError(f"progress mode must be auto, bar, plain or off, got {mode!r}")
        _settings["mode"] = mode


def _period() -> float:
    if _settings["every"] is not None:
        return _settings["every"]
    try:
        return float(os.environ.get(EVERY_ENV_VAR, 30.0))
    except ValueError:
        return 30.0


def _mode(stream: TextIO) -> str:
    mode = _settings["mode"] or os.environ.get(MODE_ENV_VAR, "auto").strip().lower() or "auto"
    if mode == "auto":
        try:
            mode = "bar" if stream.isatty() else "plain"
        except (AttributeError, ValueError):
            mode = "plain"
    return mode


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` (``D days, H:MM:SS`` past a day); ``?`` when unknown."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(round(max(seconds, 0.0)))
    days, seconds = divmod(seconds, 86400)
    hours, rest = divmod(seconds, 3600)
    text = f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
    return f"{days} day{'s' if days > 1 else ''}, {text}" if days else text


def _format_value(value: Any) -> str:
    try:
        number = float(value)  # tensors and numpy scalars: converted only here
    except (TypeError, ValueError):
        return str(value)
    if number != 0 and (abs(number) >= 1e5 or abs(number) < 1e-3):
        return f"{number:.3e}"
    return f"{number:.4g}"


def _short(key: str) -> str:
    return key.rsplit("/", 1)[-1]


class _RunPlan:
    """The stages of one run and their budgets, in order (see :func:`plan_run`)."""

    def __init__(self, stages: Mapping[str, int], costs: Optional[Mapping[str, float]] = None):
        self.stages: List[str] = list(stages)
        self.totals = {name: max(int(steps), 0) for name, steps in stages.items()}
        self.done = {name: 0 for name in self.stages}
        self.costs = {name: float(cost) for name, cost in (costs or {}).items() if float(cost) > 0}
        self.current: Optional[str] = None
        self.started = time.time()
        self.startup: Optional[float] = None  # seconds the last stage took to its first steps (compilation)

    def match(self, name: str) -> Optional[str]:
        for stage in self.stages:
            if name == stage or name.startswith(f"{stage}_"):
                return stage
        return None

    def enter(self, stage: str, start: int) -> None:
        index = self.stages.index(stage)
        for earlier in self.stages[:index]:  # not started: loaded from the cache (or already finished)
            self.done[earlier] = self.totals[earlier]
        self.current = stage
        self.done[stage] = min(start, self.totals[stage])

    def fraction(self) -> float:
        total = sum(self.totals.values())
        return sum(self.done.values()) / total if total else 1.0

    def eta(self, stage_rate: float) -> float:
        """Seconds left: the current stage at its measured rate; each later stage at that rate
        scaled by the stages' costs per step (when known), plus a start-up (compilation) as
        long as the current stage's."""
        if stage_rate <= 0:
            return float("inf")
        index = self.stages.index(self.current) if self.current in self.stages else 0
        current = self.stages[index]
        seconds = (self.totals[current] - self.done[current]) / stage_rate
        for stage in self.stages[index + 1 :]:
            steps = self.totals[stage] - self.done[stage]
            if steps <= 0:
                continue
            ratio = self.costs[stage] / self.costs[current] if stage in self.costs and current in self.costs else 1.0
            seconds += steps * ratio / stage_rate + (self.startup or 0.0)
        return seconds


_run_plan: Optional[_RunPlan] = None


_heartbeat: Dict[str, Any] = {"function": None, "every": 5.0, "last": 0.0}


def set_heartbeat(function: Optional[Callable[[], None]], every: float = 5.0) -> None:
    """Call ``function`` from :meth:`Progress.update` at most every ``every`` seconds (``None``
    stops it): the runner records its wall time this way (:class:`og_marl_omsd.runner.tracking.WallClock`)."""
    _heartbeat.update(function=function, every=float(every), last=time.time())


def _beat() -> None:
    function = _heartbeat["function"]
    now = time.time()
    if function is not None and now - _heartbeat["last"] >= _heartbeat["every"]:
        _heartbeat["last"] = now
        function()


def plan_run(stages: Optional[Mapping[str, int]], costs: Optional[Mapping[str, float]] = None) -> None:
    """Announce a run's stages (name -> steps, in order), or clear the plan with ``None``.
    ``costs``: each stage's relative cost per step (the run ETA of stages not yet started)."""
    global _run_plan
    _run_plan = None if stages is None else _RunPlan(stages, costs)


class Progress:
    """Progress of one stage of ``total`` steps (see the module docstring).

    Args:
        name: the stage's name, printed in brackets (and matched against the run plan).
        total: the stage's last step.
        start: the step the stage starts from (a resumed stage: its checkpoint's step).
        stream: where lines go (default ``sys.stdout``).
        unit: what a step is (``steps``, ``transitions``).
    """

    def __init__(self, name: str, total: int, start: int = 0, stream: Optional[TextIO] = None, unit: str = "steps"):
        self.name = name
        self.total = max(int(total), 0)
        self.start = int(start)
        self.step = int(start)
        self.unit = unit
        self.stream = stream or sys.stdout
        self.mode = _mode(self.stream)
        self.every = _period()
        self._started = time.time()
        self._first: Optional[tuple] = None  # (time, step) of the first update: later rates leave out compilation
        self._last_print = 0.0
        self._printed_step: Optional[int] = None
        self._closed = False
        self._metrics: Optional[Mapping[str, Any]] = None
        self._run_stage = _run_plan.match(name) if _run_plan is not None else None
        if _run_plan is not None and self._run_stage is not None:
            _run_plan.enter(self._run_stage, self.start)
        self._bar = None
        if self.mode == "bar":
            try:
                from tqdm import tqdm
            except ImportError:
                self.mode, self.every = "plain", 0.5
            else:
                self._bar = tqdm(
                    total=self.total,
                    initial=min(self.start, self.total),
                    desc=name,
                    unit=" " + unit,
                    dynamic_ncols=True,
                    mininterval=0.5,
                    smoothing=0.05,
                    leave=True,
                    file=self.stream,
                )

    # -- numbers
    @property
    def rate(self) -> float:
        """Steps per second in this process (resumed steps excluded), measured from the first
        update once there is more than one (the first call of a compiled step includes tracing)."""
        now = time.time()
        if self._first is not None and self.step > self._first[1] and now > self._first[0]:
            return (self.step - self._first[1]) / (now - self._first[0])
        elapsed = now - self._started
        return (self.step - self.start) / elapsed if elapsed > 0 else 0.0

    @property
    def eta(self) -> float:
        rate = self.rate
        return (self.total - self.step) / rate if rate > 0 else float("inf")

    def line(self) -> str:
        """The plain progress line for the current step."""
        percent = 100.0 * self.step / self.total if self.total else 100.0
        parts = [
            f"[{self.name}] {self.step}/{self.total} ({percent:.0f}%)",
            f"{self.rate:.1f} {self.unit}/s",
            f"ETA {format_duration(self.eta) if self.step < self.total else '0:00:00'}",
            f"elapsed {format_duration(time.time() - self._started)}",
        ]
        if self._metrics:
            parts.append(" ".join(f"{_short(key)} {_format_value(value)}" for key, value in self._metrics.items()))
        run = self._run_text()
        if run:
            parts.append(run)
        return " | ".join(parts)

    def _run_text(self) -> str:
        if self._run_stage is None or _run_plan is None:
            return ""
        return f"run {100 * _run_plan.fraction():.0f}% ETA ~{format_duration(_run_plan.eta(self.rate))}"

    # -- the hook
    def update(self, step: int, metrics: Optional[Mapping[str, Any]] = None) -> None:
        """Record that ``step`` steps of the stage are done (absolute, not an increment)."""
        _beat()
        if self._closed or self.mode == "off":
            return
        self.step = int(step)
        if self._first is None:
            self._first = (time.time(), self.step)
            if _run_plan is not None and self._run_stage is not None and self.step > self.start:
                _run_plan.startup = self._first[0] - self._started  # compilation and the first call
        if metrics is not None:
            self._metrics = metrics
        if _run_plan is not None and self._run_stage is not None:
            _run_plan.done[self._run_stage] = min(self.step, self.total)
        now = time.time()
        final = self.step >= self.total
        if self._bar is not None:
            self._bar.update(max(min(self.step, self.total) - self._bar.n, 0))
            if now - self._last_print >= 0.5 or final:
                self._last_print = now
                postfix = {}
                if self._metrics:
                    postfix.update({_short(key): _format_value(value) for key, value in self._metrics.items()})
                run = self._run_text()
                if run:
                    postfix["run"] = run[len("run ") :]
                self._bar.set_postfix(postfix, refresh=False)
            if final:
                self.close()
            return
        measured = self._first is not None and self.step > self._first[1]  # a rate without the compilation
        if final or (measured and now - self._last_print >= self.every):
            self._print()

    def _print(self) -> None:
        self._last_print = time.time()
        self._printed_step = self.step
        print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        """End the stage (prints the last line if it was not printed)."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.mode != "off" and self._printed_step != self.step and self.step > self.start:
            self._print()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class EvaluationPrinter:
    """A logger (``write(logs, force)``, ``close()``) that prints evaluations as readable lines
    and leaves per-step training numbers to :class:`Progress`::

        [evaluation] actors step 200/600: mean return 0.9123 (min 0.85, max 0.95) | coordination_rate 1
    """

    def __init__(self, total_steps: Optional[int] = None, stream: Optional[TextIO] = None):
        self.total_steps = total_steps
        self.stream = stream

    def write(self, logs: Mapping[str, Any], force: bool = False) -> None:
        if "evaluation/mean_episode_return" not in logs:
            return
        step = logs.get("evaluation/training_steps")
        where = (
            "" if step is None else f" actors step {int(step)}" + (f"/{self.total_steps}" if self.total_steps else "")
        )
        line = (
            f"[evaluation]{where}: mean return {_format_value(logs['evaluation/mean_episode_return'])} "
            f"(min {_format_value(logs.get('evaluation/min_episode_return', float('nan')))}, "
            f"max {_format_value(logs.get('evaluation/max_episode_return', float('nan')))})"
        )
        others = [
            f"{_short(key)} {_format_value(value)}"
            for key, value in logs.items()
            if key.startswith("evaluation/")
            and _short(key) not in ("mean_episode_return", "min_episode_return", "max_episode_return", "training_steps")
        ]
        if others:
            line += " | " + " ".join(others)
        print(line, file=self.stream or sys.stdout, flush=True)

    def close(self) -> None:
        return
