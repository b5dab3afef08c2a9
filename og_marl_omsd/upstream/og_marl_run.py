# og_marl_omsd/upstream/og_marl_run.py is copied WHOLE into OG-MARL as og_marl/run.py by
# `python -m og_marl_omsd.upstream export` (og_marl_omsd/upstream/export.py), changed only by:
#   1. these comment lines, up to the module docstring, are left out;
#   2. the HOST block (from its BEGIN line to its END line, below the imports) is replaced by
#      OG-MARL's (export.OG_MARL_HOST: OG-MARL's own environments, replay buffer and loggers);
#   3. the plain-text renames of export.RENAMES (og_marl_omsd.run -> og_marl.run, ...).
# So outside the HOST block it imports only the standard library, numpy, hydra and omegaconf, and
# it names nothing of this plugin. The plugin's other modules import these definitions from here
# (UserError, the atomic file writes, the run schema and checks, the run directory, marl-eval
# names and JSON, the entry-point registry, the runner of systems without pretraining): one
# definition each. It sits below every other module of the plugin (.importlinter); only its HOST
# block reaches up: to its systems' rule for run identities, and at call time to its host seam.
# Its `main` is og_marl.run's command (beside og_marl/configs); the plugin's is og_marl_omsd.runner.run.
"""Run any registered offline system: ``python -m og_marl.run system=<name> env=<env> task=<task>``.

Grammar: ``system= env= task= dataset= seed= training_steps= evaluation_every=
num_eval_episodes= vault_dir= system.<param>=<value>`` (see ``og_marl/configs/``). Systems
are the ``og_marl.systems`` entry points of every installed distribution (OG-MARL's own are
declared in ``pyproject.toml``); their configs are ``configs/system/<name>.yaml`` here or in
another distribution's configs, added to the search path by its hydra ``SearchPathPlugin``.
A system class with a ``run_experiment(cfg)`` hook runs itself; any other
``BaseOfflineSystem`` is trained on the task's vault and evaluated with OG-MARL's ``train``
loop. The vault is ``<vault_dir>/<source>/<env_name>/<scenario>.vlt/<dataset>`` (OG-MARL's
layout, as ``download_and_unzip_vault`` writes it) unless an ``og_marl.dataset_sources``
entry point of another distribution knows the task. Environments registered as
``og_marl.environments`` entry points come before ``get_environment``. Bad input is one
paragraph and exit code 2. Each run writes ``config.yaml``, ``results.json`` and marl-eval
``metrics.json`` (the task name carries the dataset, the algorithm name the settings given;
every evaluation episode's return is kept) to
``runs/<system>/<env>-<task>/<dataset>/seed<n>-<config hash>/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import json
import os
import sys
import time
from dataclasses import dataclass, field, fields
from importlib.metadata import EntryPoint, entry_points
from typing import IO, Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple, cast

import hydra
import numpy as np
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

# HOST BEGIN: this plugin's side of the seam; the export replaces the block with OG-MARL's own modules.
# The only imports of the plugin here (.importlinter), both at call time (the plugin's modules import this
# one): its systems' rule for run identities, and its host seam, og_marl_omsd.host (it loads TensorFlow,
# and OG-MARL when installed).
HOST_NAME = "og-marl-omsd"


def identity_neutral(name: str, value: Any) -> bool:
    """The plugin systems' rule: whether ``system.<name>=<value>`` leaves a run's identity as it
    was before the hyperparameter existed (imported at call time: the systems import this module)."""
    from og_marl_omsd.systems.defaults import identity_neutral as neutral

    return neutral(name, value)


def host_modules() -> Any:
    """``get_environment``, ``FlashbaxReplayBuffer``, ``TerminalLogger``, ``WandbLogger``, ``HOST``."""
    from og_marl_omsd import host

    return host


# HOST END


# ---------------------------------------------------------------------- errors
class UserError(Exception):
    """A mistake in the command or the data: printed as one paragraph, exit code 2."""

    exit_code = 2  # read by runners that do not know this class (og_marl.run)


# ---------------------------------------------------------------------- atomic files
TEMPORARY_MARK = ".tmp-"


def _temporary_path(path: str) -> str:
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}{TEMPORARY_MARK}{os.getpid()}")


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "w") -> Iterator[IO[Any]]:
    """A handle whose content replaces ``path`` atomically when the ``with`` block ends
    (temporary file beside it, fsync, ``os.replace``, fsync of the directory).

    On any failure the temporary file is removed and the previous ``path`` is left intact.
    """
    temporary = _temporary_path(path)
    try:
        with open(temporary, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise
    _sync_directory(os.path.dirname(os.path.abspath(path)))


def write_text(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (:func:`atomic_file`)."""
    with atomic_file(path) as handle:
        handle.write(text)


def write_json(path: str, data: Any, indent: Optional[int] = 2) -> None:
    """:func:`write_text` of ``json.dumps(data)``."""
    write_text(path, json.dumps(data, indent=indent, default=str))


def _sync_directory(directory: str) -> None:
    """fsync a directory so a rename in it survives a power cut (best effort)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


# ---------------------------------------------------------------------- settings
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _whole(value: Any) -> bool:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return True  # also past int64, where np.isfinite fails: a range rule then names the limit
    return _is_number(value) and bool(np.isfinite(value)) and float(value).is_integer()


SEED_RANGE = (0, 2**31 - 1)  # what TF, NumPy and JAX all accept as a seed


MAX_BATCH_SIZE = 1 << 20


RUN_RULES: Dict[str, Tuple[Callable[[Any], bool], str]] = {
    "seed": (lambda v: _whole(v) and SEED_RANGE[0] <= v <= SEED_RANGE[1], f"a whole number in [0, {SEED_RANGE[1]}]"),
    # step counts are int64 on the device: 2**63 - 1 at most
    "training_steps": (lambda v: _whole(v) and 1 <= v <= 2**63 - 1, "> 0 and at most 2**63 - 1"),
    "evaluation_every": (lambda v: _whole(v) and 1 <= v <= 2**63 - 1, "> 0 and at most 2**63 - 1"),
    "num_eval_episodes": (lambda v: _whole(v) and 1 <= v <= 2**31 - 1, "> 0 and at most 2**31 - 1"),
    "checkpoint_every": (lambda v: _whole(v) and 1 <= v <= 2**63 - 1, "> 0 and at most 2**63 - 1"),
    "replay.sequence_length": (
        lambda v: _whole(v) and v >= 2,
        "a whole number >= 2 (a transition needs its successor)",
    ),
    "replay.batch_size": (
        lambda v: _whole(v) and 1 <= v <= MAX_BATCH_SIZE,
        f"a whole number in [1, {MAX_BATCH_SIZE}] (and at most the dataset's timesteps)",
    ),
    "logger.terminal_log_every": (lambda v: _is_number(v) and v >= 0, "a number >= 0 (seconds)"),
    "budget_scale": (lambda v: _is_number(v) and 0 < v < float("inf"), "a finite number > 0 (0.01 for a smoke run)"),
}


def rule_problems(
    values: Mapping[str, Any], rules: Mapping[str, Tuple[Callable[[Any], bool], str]], prefix: str = ""
) -> List[str]:
    """``"<prefix><name> must be <what> (got <value>)"`` for every value in ``values`` that breaks its rule."""
    problems = []
    for name, (test, what) in rules.items():
        if name not in values:
            continue
        value = values[name]
        try:
            good = bool(test(value))
        except (TypeError, ValueError):
            good = False
        if not good:
            problems.append(f"{prefix}{name} must be {what} (got {value!r})")
    return problems


def unknown_keys(config: Mapping[str, Any], schemas: Mapping[str, Any]) -> List[str]:
    """Dotted keys of ``config`` not in its schema (``schemas``: ``{"": RunSchema, "replay": ReplaySchema, ...}``),
    e.g. a ``+foo=1`` that would otherwise be ignored silently."""
    import dataclasses

    unknown: List[str] = []
    for section, schema in schemas.items():
        node = config if not section else config.get(section, {})
        if not isinstance(node, Mapping):
            continue
        known = {f.name for f in dataclasses.fields(schema)}
        unknown.extend(f"{section + '.' if section else ''}{key}" for key in node if key not in known)
    return unknown


def dataset_name_problem(name: Any) -> Optional[str]:
    """Why ``name`` cannot be a dataset's name (a folder name in the vault), or ``None``: no
    path separators, not ``.``/``..``, no leading ``.`` (temporaries), nothing empty."""
    if not isinstance(name, str) or not name:
        return "it is empty"
    if name in (".", ".."):
        return f"{name!r} is a path, not a name"
    separators = [sep for sep in (os.sep, os.altsep, "/", "\\") if sep and sep in name]
    if separators:
        return f"it contains the path separator {separators[0]!r}"
    if name.startswith("."):
        return "names starting with '.' are kept for temporary folders"
    if "\0" in name:
        return "it contains a NUL character"
    return None


def check_dataset_name(name: Any, setting: str = "dataset") -> None:
    """Raise :class:`UserError` unless ``name`` is a plain dataset name (checked before any path is built)."""
    problem = dataset_name_problem(name)
    if problem is not None:
        raise UserError(
            f"{setting}={name!r} is not a dataset name: {problem}. A dataset is named by its folder in the task's "
            f"vault (e.g. {setting}=Medium), without '/', '.' or '..'; to read datasets from another folder set "
            "vault_dir=<path>. Nothing was read or written."
        )


# ---------------------------------------------------------------------- the run: schema, identity, results
# Settings that do not change a run's results: left out of its identity (directory hash and
# the check that an existing run directory holds the same run).
# budget_scale: the budgets it scaled are in the identity (and a run made before it existed keeps its directory).
NOT_RUN_IDENTITY = ("run_dir", "runs_root", "pretrained_dir", "logger", "checkpoint_every", "budget_scale")


@dataclass
class ReplaySchema:
    sequence_length: int = 2
    batch_size: int = 256


@dataclass
class LoggerSchema:
    wandb: bool = False
    wandb_project: str = "og-marl-omsd"
    terminal_log_every: float = 5.0
    progress_every: float = 30.0
    verbose: bool = False  # true: the libraries' log lines and warnings reach the terminal


@dataclass
class RunSchema:
    seed: int = 0
    training_steps: int = 1000
    evaluation_every: int = 5000
    num_eval_episodes: int = 32
    dataset: Optional[str] = None
    run_dir: Optional[str] = None
    runs_root: str = "runs"
    vault_dir: str = "vaults"
    pretrained_dir: str = "runs/pretrained"
    checkpoint_every: int = 1000
    clip_actions: bool = False
    budget_scale: float = 1.0
    replay: ReplaySchema = field(default_factory=ReplaySchema)
    logger: LoggerSchema = field(default_factory=LoggerSchema)
    system: Any = MISSING
    env: Any = MISSING
    task: Any = MISSING


def system_parameters(system_class: type, params: Dict[str, Any]) -> Dict[str, Any]:
    """Check ``system.*`` against the constructor: unknown names and wrong types are errors."""
    signature = inspect.signature(system_class.__init__)  # type: ignore[misc]
    known = {
        name: p.default for name, p in signature.parameters.items() if name not in ("self", "environment", "logger")
    }
    reserved = {"reward_scale", "seed"}  # set by the runner
    problems = []
    for name, value in params.items():
        if name in reserved:
            setting = "seed=" if name == "seed" else "task.reward_normalisation="
            problems.append(f"system.{name} is set by the runner (use {setting})")
        elif name not in known:
            problems.append(f"unknown parameter system.{name}")
        else:
            default = known[name]
            if isinstance(default, bool) and not isinstance(value, bool):
                problems.append(f"system.{name} must be true or false, got {value!r}")
            elif (
                isinstance(default, (int, float))
                and not isinstance(default, bool)
                and (isinstance(value, bool) or not isinstance(value, (int, float)))
            ):
                problems.append(f"system.{name} must be a number, got {value!r}")
            elif (
                isinstance(default, int)
                and not isinstance(default, bool)
                and isinstance(value, float)
                and not value.is_integer()
            ):
                problems.append(f"system.{name} must be an integer, got {value!r}")
    if problems:
        choices = ", ".join(sorted(set(known) - reserved))
        raise UserError(
            "Bad system configuration: " + "; ".join(problems) + f". Parameters of {system_class.__name__}: {choices}."
        )
    params = {
        k: (int(v) if isinstance(known[k], int) and not isinstance(known[k], bool) and isinstance(v, float) else v)
        for k, v in params.items()
    }
    check = getattr(system_class, "check_parameters", None)
    if check is not None:
        try:
            check(**params)
        except ValueError as error:
            raise UserError(f"Bad system configuration: {error} Set them with system.<name>=<value>.") from None
    return params


def run_identity(resolved: Dict[str, Any], dataset: Optional[str] = None) -> Dict[str, Any]:
    """The settings that make a run what it is: the resolved config less ``NOT_RUN_IDENTITY``
    and less the system hyperparameters added after the pin that sit at their default
    (:func:`identity_neutral`), with the dataset resolved
    (``dataset`` or the task's default)."""
    identity = {key: value for key, value in resolved.items() if key not in NOT_RUN_IDENTITY}
    if isinstance(identity.get("system"), dict):  # hyperparameters added later, at their default
        identity["system"] = {k: v for k, v in identity["system"].items() if not identity_neutral(k, v)}
    identity["dataset"] = dataset or resolved.get("dataset") or resolved["task"]["dataset"]
    return identity


def default_run_dir(cfg: DictConfig, dataset: str) -> str:
    """``runs/<system>/<env>-<task>/<dataset>/seed<seed>-<hash>``: the same command finds its run.
    On data of another vault config than the task's own (``task.vault_config=2ant-quick``) the
    dataset part names it, ``<dataset>@<vault config>``, so a smoke result never looks like one
    on the real dataset."""
    resolved = run_identity(cast(Dict[str, Any], OmegaConf.to_container(cfg, resolve=True)), dataset)
    digest = hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:8]
    vault_config = os.path.splitext(os.path.basename(str(cfg.task.get("vault_config") or cfg.task.name)))[0]
    data = dataset if vault_config == cfg.task.name else f"{dataset}@{vault_config}"
    return os.path.join(
        cfg.runs_root, cfg.system.name, f"{cfg.env.name}-{cfg.task.name}", data, f"seed{cfg.seed}-{digest}"
    )


def check_run_settings(cfg: DictConfig) -> None:
    """The run's own numbers and the task/env pairing (before anything is loaded or written)."""
    resolved = cast(Dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    unknown = unknown_keys(resolved, {"": RunSchema, "replay": ReplaySchema, "logger": LoggerSchema})
    if unknown:
        raise UserError(
            f"Unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} (added with +?): it "
            "would be ignored. Settings: "
            + ", ".join(f.name for f in fields(RunSchema))
            + "; replay."
            + ", replay.".join(f.name for f in fields(ReplaySchema))
            + ". Remove it or fix its name."
        )
    check_dataset_name(cfg.dataset or cfg.task.dataset)  # a name, not a path: before any path is built
    problems = rule_problems(_flatten(resolved), RUN_RULES)
    if problems:
        raise UserError("Bad run settings: " + "; ".join(problems) + ".")
    if cfg.logger.wandb and importlib.util.find_spec("wandb") is None:
        raise UserError(
            "logger.wandb=true needs the wandb package, which is not installed. Install it with "
            "`pip install wandb` (or `pip install og-marl-omsd[wandb]`), or run with logger.wandb=false."
        )
    if cfg.task.env != cfg.env.name:
        raise UserError(
            f"Task {cfg.task.name!r} belongs to env {cfg.task.env!r}, not {cfg.env.name!r}. Pick a task of "
            f"env={cfg.env.name} (see og_marl_omsd/configs/task/) or env={cfg.task.env}."
        )


def _flatten(tree: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def run_results(
    cfg: DictConfig,
    dataset: str,
    host_name: str,
    evaluations: List[Dict[str, float]],
    stage_steps: Dict[str, int],
    **extra: Any,
) -> Dict[str, Any]:
    """``results.json``'s content: the run's identity, its final evaluation and evaluation
    curve, the steps of each stage, then ``extra`` (in the order given)."""
    vault_config = os.path.splitext(os.path.basename(str(cfg.task.get("vault_config") or cfg.task.name)))[0]
    return {
        "system": cfg.system.name,
        "env": cfg.env.name,
        "task": cfg.task.name,
        "dataset": dataset,
        **({"vault_config": vault_config} if vault_config != cfg.task.name else {}),  # not the task's own data
        "seed": int(cfg.seed),
        "host": host_name,
        "final_evaluation": evaluations[-1],
        "evaluation_curve": evaluations,
        "stage_steps": stage_steps,
        **extra,
    }


def print_summary(results: Dict[str, Any]) -> None:
    final = results["final_evaluation"]
    line = f"Final mean return: {final['mean_episode_return']:.4f}"
    if "coordination_rate" in final:
        line += f" | coordination rate: {final['coordination_rate']:.2f}"
    processes = results.get("wall_time_processes") or []
    shares = f" over {len(processes)} processes" if len(processes) > 1 else ""
    vault_config = results.get("vault_config")
    data = f" on vault config {vault_config}" if vault_config else ""
    if vault_config and str(vault_config).endswith("-quick"):
        data += " (quick data for smoke runs: not a result on the real dataset)"
    print(
        f"{line} | wall time {results['wall_time_seconds']:.1f} s{shares} | results: {results['system']} "
        f"{results['task']}/{results['dataset']}{data} seed {results['seed']}",
        flush=True,
    )
    if "stage_steps" in results:
        print("Steps: " + ", ".join(f"{stage} {steps}" for stage, steps in results["stage_steps"].items()), flush=True)


# ---------------------------------------------------------------------- marl-eval names
def setting_text(value: Any) -> str:
    """A setting's value in a name: numbers as ``%g``, lists joined by ``x`` (marl-eval refuses commas)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "x".join(setting_text(item) for item in value)
    return str(value).replace(",", ";")


def with_settings(name: str, settings: Mapping[str, Any]) -> str:
    """``name@key=value...``: beta first, then the other settings by name."""
    keys = sorted(settings, key=lambda key: (key != "beta", key))
    return name + "".join(f"@{key}={setting_text(settings[key])}" for key in keys)


def marl_eval_task_name(task: str, dataset: str) -> str:
    """The task level of marl-eval's hierarchy: the task and its dataset (``2halfcheetah-Medium``)."""
    return f"{task}-{dataset}"


# ---------------------------------------------------------------------- evaluation record, marl-eval JSON
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


# ---------------------------------------------------------------------- systems registry (entry points)
GROUP = "og_marl.systems"


class UnknownSystemError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def available_systems() -> Dict[str, EntryPoint]:
    """Registered system names and their (not yet imported) entry points."""
    return {entry.name: entry for entry in entry_points(group=GROUP)}


def load_registered_system(name: str) -> type:
    """Import and return the system class registered as ``name`` (entry points only)."""
    systems = available_systems()
    if name not in systems:
        known = ", ".join(sorted(systems)) or "none"
        raise UnknownSystemError(
            f"Unknown system {name!r}. Registered systems ({GROUP} entry points): {known}. "
            "A distribution registers more in its packaging metadata (setup.cfg [options.entry_points] or "
            f'pyproject.toml [project.entry-points."{GROUP}"]); reinstall it after adding one.'
        )
    return systems[name].load()


# ---------------------------------------------------------------------- runner of systems without pretraining
VaultPlace = Tuple[str, str, str, str]  # source, env_name, scenario, rel_dir


DATASET_SOURCES = "og_marl.dataset_sources"  # entry points: (cfg, dataset) -> VaultPlace, or None when not theirs
# Settings that name no setting of a run's results in marl-eval's hierarchy (they are its other levels or places).
NOT_MARL_EVAL_SETTINGS = ("seed", "dataset", "env", "task", "system", "vault_dir", *NOT_RUN_IDENTITY)


CONFIG_MODULE = "og_marl_omsd.configs"  # the runner's own configs (the export names OG-MARL's)


def command_line_system_keys() -> set:
    """``system.<key>`` names given on the command line (empty outside a hydra app)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    except (ImportError, ValueError):
        overrides = []
    keys = set()
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key.startswith("system."):
            keys.add(key[len("system.") :])
    return keys


def composed_defaults(cfg: DictConfig) -> Optional[Dict[str, Any]]:
    """What ``system=<name> env=<env> task=<task>`` composes to with nothing else given (the running
    hydra app's configs, else :data:`CONFIG_MODULE`'s): the defaults a run's settings are told
    apart from. ``None`` when it cannot be composed (a name that is no config option)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    choices = [f"system={cfg.system.name}", f"env={cfg.env.name}", f"task={cfg.task.name}"]
    try:
        if GlobalHydra.instance().is_initialized():
            composed = compose(config_name="config", overrides=choices)
        else:
            with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
                composed = compose(config_name="config", overrides=choices)
    except Exception:  # hydra's own errors (a missing config option, ...): no defaults to compare with
        return None
    return cast(Dict[str, Any], OmegaConf.to_container(composed, resolve=True))


def marl_eval_names(
    cfg: DictConfig,
    dataset: str,
    params: Optional[Dict[str, Any]] = None,
    defaults: Optional[Dict[str, Any]] = None,
) -> Tuple[str, str, str]:
    """``(env, task, algorithm)`` of the run in marl-eval's hierarchy, so that concatenating any
    runs' ``metrics.json`` never merges two datasets or two settings, however the runs were
    started: the task carries the dataset and any ``task.*`` setting that is not the task's
    default (``2halfcheetah-Medium@vault_config=2halfcheetah-quick``), the algorithm carries the
    system's ``beta`` (when it has one) and every other setting that shapes results and is not
    the default (``iddpg_bc@bc_alpha=2.5@training_steps=50000``). ``defaults``: the config to
    compare with (default :func:`composed_defaults`); ``params``: the system's parameters
    (default ``system.*``), an env preset's key the system does not take being no setting of it."""
    system = cast(Dict[str, Any], OmegaConf.to_container(cfg.system, resolve=True)) if params is None else params
    resolved = cast(Dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    defaults = composed_defaults(cfg) if defaults is None else defaults
    flat = _flatten(resolved) if defaults is not None else {}  # no defaults: only beta tells runs apart
    reference = _flatten(defaults) if defaults is not None else {}
    task_settings: Dict[str, Any] = {}
    settings: Dict[str, Any] = {}
    for key, value in flat.items():
        top, _, rest = key.partition(".")
        if key in ("system.name", "task.name", "system.beta") or (key in reference and reference[key] == value):
            continue
        if top == "task":
            task_settings[rest] = value
        elif top == "system":
            if rest in system:
                settings[rest] = value
        elif top not in (*NOT_MARL_EVAL_SETTINGS, "hydra"):
            settings[key] = value
    if system.get("beta") is not None:
        settings["beta"] = system["beta"]
    task = with_settings(marl_eval_task_name(str(cfg.task.name), dataset), task_settings)
    return str(cfg.env.name), task, with_settings(str(cfg.system.name), settings)


def offline_system_parameters(cfg: DictConfig, system_class: type) -> Dict[str, Any]:
    """``system.*`` for the constructor: an env preset's keys for other systems are left out.

    Env presets (``env=bandit``, ``env=mamujoco``) also set the score-regularised systems'
    sizes; a system that does not take such a key ignores it (one line says so). A key given
    on the command line must be the system's (else the usual error listing its parameters).
    """
    system = cast(Dict[str, Any], OmegaConf.to_container(cfg.system, resolve=True))
    params = {key: value for key, value in system.items() if key != "name"}
    accepted = set(inspect.signature(system_class.__init__).parameters)  # type: ignore[misc]
    explicit = command_line_system_keys()
    ignored = sorted(key for key in params if key not in accepted and key not in explicit)
    if ignored:
        print(
            f"[run] {cfg.system.name} takes no {', '.join(ignored)} (env preset for other systems): ignored", flush=True
        )
    return system_parameters(system_class, {key: value for key, value in params.items() if key not in ignored})


def task_vault(cfg: DictConfig, dataset: str) -> VaultPlace:
    """The task's vault: the first ``og_marl.dataset_sources`` entry point that knows the task
    (another distribution's datasets), else OG-MARL's layout,
    ``<vault_dir>/<source>/<env_name>/<scenario>.vlt/<dataset>``, which must exist."""
    for entry in entry_points(group=DATASET_SOURCES):
        place = entry.load()(cfg, dataset)
        if place is not None:
            return cast(VaultPlace, tuple(place))
    place = (str(cfg.task.source), str(cfg.task.env_name), str(cfg.task.scenario), str(cfg.vault_dir))
    path = os.path.join(place[3], place[0], place[1], f"{place[2]}.vlt")
    if not os.path.isdir(os.path.join(path, dataset)):
        on_disk = sorted(name for name in os.listdir(path) if not name.startswith(".")) if os.path.isdir(path) else []
        raise UserError(
            f"No dataset {dataset!r} for task {cfg.task.name}: looked for {os.path.join(path, dataset)} (on disk "
            f"there: {', '.join(on_disk) or 'none'}). Choose one with dataset=<name>, point vault_dir=<dir> at the "
            "directory holding <source>/<env_name>/<scenario>.vlt, or download the task's vault into it: python -c "
            '"from og_marl.vault_utils.download_vault import download_and_unzip_vault; '
            f"download_and_unzip_vault('{place[0]}', '{place[1]}', '{place[2]}', dataset_base_dir='{place[3]}')\"."
        )
    return place


def run_offline_system(
    cfg: DictConfig,
    system_class: type,
    prepare_vault: Optional[Callable[[DictConfig, str], VaultPlace]] = None,
    more_results: Optional[Callable[[], Dict[str, Any]]] = None,
    check_data: Optional[Callable[[str, VaultPlace, str, bool], None]] = None,
) -> Dict[str, Any]:
    """Train and evaluate ``system_class(environment, logger, **system.*)``; returns ``results.json``'s content.

    ``prepare_vault(cfg, dataset)`` finds (or generates) the dataset; the default is
    :func:`task_vault`. ``more_results()`` adds entries to ``results.json`` (the plugin's
    provenance). A finished run directory prints its results instead, after
    ``check_data(run_dir, place, dataset, finished)`` (the plugin's: the run was made from the
    dataset now on disk, else it refuses) accepts it; before a new run it records the dataset.
    """
    start = time.time()
    check_run_settings(cfg)
    params = offline_system_parameters(cfg, system_class)
    dataset = cfg.dataset or cfg.task.dataset
    run_dir = cfg.run_dir or default_run_dir(cfg, dataset)
    results_path = os.path.join(run_dir, "results.json")
    place = (prepare_vault or task_vault)(cfg, dataset)
    if os.path.isfile(results_path):
        with open(results_path) as handle:
            results = json.load(handle)
        if check_data is not None:
            check_data(run_dir, place, dataset, True)  # never the result of other data
        print(f"Run already complete: {run_dir}", flush=True)
        print_summary(results)
        return results
    host, environment, buffer = offline_environment_and_buffer(cfg, place, dataset)
    os.makedirs(run_dir, exist_ok=True)
    if check_data is not None:
        check_data(run_dir, place, dataset, False)
    write_text(os.path.join(run_dir, "config.yaml"), OmegaConf.to_yaml(cfg, resolve=True))
    logger = offline_logger(cfg, host, run_dir, dataset, environment, params)
    print(
        f"[run] {cfg.system.name} ({system_class.__module__}.{system_class.__name__}) on {cfg.task.name}/{dataset} "
        f"seed {cfg.seed} (host: {host.HOST}); run dir {run_dir}",
        flush=True,
    )
    system = system_class(environment, logger, **params)
    system.train(
        buffer,
        training_steps=int(cfg.training_steps),
        evaluation_every=int(cfg.evaluation_every),
        num_eval_episodes=int(cfg.num_eval_episodes),
    )
    logger.write_absolute({k: v for k, v in logger.evaluations[-1].items() if k != "training_steps"})
    logger.close()
    results = run_results(
        cfg,
        dataset,
        host.HOST,
        logger.evaluations,
        {"training": int(system.training_step_ctr)},
        wall_time_seconds=time.time() - start,
        **(more_results() if more_results else {}),
    )
    write_json(results_path, results)
    print_summary(results)
    return results


def offline_environment_and_buffer(cfg: DictConfig, place: VaultPlace, dataset: str) -> Tuple[Any, Any, Any]:
    """The host modules, the task's environment and the replay buffer filled from the vault at ``place``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import jax
    import tensorflow as tf

    jax.config.update("jax_platform_name", "cpu")  # flashbax sampling on the CPU, as OG-MARL's scripts
    host = host_modules()
    environment = EpisodeReturns(
        host.get_environment(cfg.task.source, cfg.task.env_name, cfg.task.scenario, seed=int(cfg.seed))
    )
    tf.random.set_seed(int(cfg.seed))
    np.random.seed(int(cfg.seed))
    buffer = host.FlashbaxReplayBuffer(
        sequence_length=int(cfg.replay.sequence_length), batch_size=int(cfg.replay.batch_size), seed=int(cfg.seed)
    )
    source, env_name, scenario, rel_dir = place
    buffer.populate_from_vault(source, env_name, scenario, dataset, rel_dir=os.path.abspath(rel_dir))
    return host, environment, buffer


def offline_logger(
    cfg: DictConfig, host: Any, run_dir: str, dataset: str, environment: Any, params: Dict[str, Any]
) -> EvaluationRecord:
    """Terminal lines (or wandb), and marl-eval JSON in ``run_dir`` (named by :func:`marl_eval_names`,
    with the episodes' returns the ``environment`` recorded), with the evaluation record."""
    if cfg.logger.wandb:
        loggers = [host.WandbLogger(project=cfg.logger.wandb_project, config=OmegaConf.to_container(cfg, resolve=True))]
    else:
        loggers = [host.TerminalLogger(log_every=cfg.logger.terminal_log_every)]
    env_name, task_name, algorithm = marl_eval_names(cfg, dataset, params)
    return EvaluationRecord(
        loggers, MarlEvalWriter(run_dir, algorithm, task_name, env_name, int(cfg.seed)), episodes=environment
    )


def run_registered(cfg: DictConfig) -> Dict[str, Any]:
    """``og_marl.run``'s run: the ``og_marl.systems`` entry point named ``system.name``; a class
    with a ``run_experiment(cfg)`` hook runs itself, any other through :func:`run_offline_system`."""
    check_run_settings(cfg)
    try:
        system_class = load_registered_system(cfg.system.name)
    except UnknownSystemError as error:
        raise UserError(str(error)) from None
    hook = getattr(system_class, "run_experiment", None)
    if hook is not None:
        return hook(cfg)
    return run_offline_system(cfg, system_class)


ConfigStore.instance().store(name="run_schema", node=RunSchema)


@hydra.main(version_base=None, config_path="configs", config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        run_registered(cfg)
    except Exception as error:  # a system's own user-facing errors carry an exit_code too
        code = getattr(error, "exit_code", None)
        if code is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"{'Error' if code == 2 else 'Stopped'}: {error}", file=sys.stderr)
        sys.exit(code)


if __name__ == "__main__":
    main()
