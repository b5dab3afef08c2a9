"""Checks the runner makes before it writes anything: output directories and the dataset.

Each check raises :class:`UserError` with one paragraph that says what is wrong, what was
expected and found, and what to do. The runner prints it without a traceback.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Dict, List, Mapping, Tuple

import numpy as np

# The dataset folder's checks: defined in og_marl_omsd.datasets.checks (the dataset record reads through them).
from og_marl_omsd.datasets.checks import (  # noqa: F401 (re-exported)
    check_dataset_folder,
    check_readable_dataset,
    os_error_paragraph,
    read_checked_dataset,
)
from og_marl_omsd.datasets.vaults import missing_directories
from og_marl_omsd.support.errors import UserError

# The run's settings rules and the dataset name check: defined in og_marl_run (exported as og_marl/run.py).
from og_marl_omsd.upstream.og_marl_run import (  # noqa: F401 (re-exported)
    MAX_BATCH_SIZE,
    RUN_RULES,
    SEED_RANGE,
    _is_number,
    _whole,
    check_dataset_name,
    dataset_name_problem,
    rule_problems,
    unknown_keys,
)


def check_writable_directory(path: str, what: str, setting: str) -> None:
    """Raise :class:`UserError` unless ``path`` can be created or written.

    Probes the directory itself when it exists, else its nearest existing ancestor, with a
    temporary file that is removed at once (works for root, unlike ``os.access``); nothing
    stays behind. ``what`` names the directory in the message, ``setting`` the config key
    that chooses it.
    """
    missing = missing_directories(path)
    probe = os.path.dirname(missing[-1]) if missing else os.path.abspath(path)
    problem = None
    if not os.path.isdir(probe):
        problem = f"{probe} is not a directory"
    else:
        try:
            handle, name = tempfile.mkstemp(prefix=".write-probe-", dir=probe)
            os.close(handle)
            os.remove(name)
        except OSError as error:
            problem = f"{probe} is not writable ({error.strerror or error})"
    if problem is not None:
        raise UserError(
            f"Cannot write the {what} {path}: {problem}. Choose a writable location with {setting}=<path>, or fix "
            "its permissions. Nothing was written."
        )


def expected_field_shapes(environment: Any) -> Dict[str, Tuple[int, ...]]:
    """Per-timestep shape of every OG-MARL experience field for ``environment``."""
    agents = len(environment.agents)
    observation = tuple(int(d) for d in np.atleast_1d(environment.observation_shape))
    return {
        "observations": (agents, *observation),
        "actions": (agents, int(environment.num_actions)),
        "rewards": (agents,),
        "terminals": (agents,),
        "truncations": (agents,),
        "infos.state": tuple(int(d) for d in np.atleast_1d(environment.state_shape)),
    }


def _field(experience: Mapping[str, Any], dotted: str) -> Any:
    value: Any = experience
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or value.get(part) is None:
            return None
        value = value[part]
    return np.asarray(value)


def validate_experience(
    experience: Mapping[str, Any], environment: Any, dataset: str, environment_name: str, clip_actions: bool
) -> Dict[str, Any]:
    """Check a dataset against the environment the run evaluates in.

    Args:
        experience: the dataset (``read_dataset``): fields with a leading time axis.
        environment: the environment (``agents``, ``observation_shape``, ``num_actions``, ``state_shape``).
        dataset: how to name the dataset in messages (its path).
        environment_name: how to name the environment in messages.
        clip_actions: accept actions outside [-1, 1] (training clips them) instead of failing.

    Returns:
        ``{"timesteps": T, "actions_outside": count}``.

    Raises:
        UserError: an empty dataset, a missing field, a shape that does not match (agent
            count, observation, action or state shape; expected vs found), NaN or inf in any
            field (with counts), or actions outside [-1, 1] unless ``clip_actions``.
    """
    hint = (
        "The dataset must be recorded in this environment: pick another with dataset=<name>, or move it aside "
        "(it may belong to another task) and let the runner generate this one from its vault config."
    )
    expected = expected_field_shapes(environment)
    arrays = {name: _field(experience, name) for name in expected}
    timesteps = {name: int(array.shape[0]) if array.ndim else 0 for name, array in arrays.items() if array is not None}
    if max(timesteps.values(), default=0) == 0:
        raise UserError(
            f"Dataset {dataset} is empty (0 timesteps). Delete it and generate it again, or choose "
            "another with dataset=<name>."
        )
    missing = [name for name, array in arrays.items() if array is None]
    if missing:
        raise UserError(
            f"Dataset {dataset} has no field {', '.join(missing)} (an OG-MARL vault has {', '.join(expected)}). {hint}"
        )
    problems = _shape_problems(arrays, timesteps, expected, environment)
    if problems:
        raise UserError(
            f"Dataset {dataset} does not match environment {environment_name}: " + "; ".join(problems) + f". {hint}"
        )
    _check_finite(arrays, dataset)
    actions = arrays["actions"]
    outside = int(np.count_nonzero(np.abs(actions) > 1.0))
    if outside and not clip_actions:
        raise UserError(
            f"Dataset {dataset} has {outside} of {actions.size} action values outside [-1, 1] (min "
            f"{float(actions.min()):.4g}, max {float(actions.max()):.4g}); the environment's actions lie in [-1, 1]. "
            "If the data is right apart from that, run with clip_actions=true to clip them for training; otherwise "
            "fix the dataset."
        )
    return {"timesteps": timesteps["actions"], "actions_outside": outside}


def _shape_problems(
    arrays: Mapping[str, np.ndarray],
    timesteps: Mapping[str, int],
    expected: Mapping[str, Tuple[int, ...]],
    environment: Any,
) -> List[str]:
    """Lengths, agent count and per-step shapes that do not match the environment."""
    problems: List[str] = []
    if len(set(timesteps.values())) > 1:
        problems.append("fields have different lengths (" + ", ".join(f"{k} {v}" for k, v in timesteps.items()) + ")")
    agents = len(environment.agents)
    found_agents = {
        name: int(array.shape[1]) for name, array in arrays.items() if name != "infos.state" and array.ndim >= 2
    }
    if any(count != agents for count in found_agents.values()):
        found = sorted(set(found_agents.values()))
        problems.append(
            f"agent count: expected {agents} ({', '.join(environment.agents)}), found {' / '.join(map(str, found))}"
        )
    for name, shape in expected.items():
        found_shape = tuple(int(d) for d in arrays[name].shape[1:])
        if found_shape != shape:
            problems.append(f"{name}: expected per-step shape {shape}, found {found_shape}")
    return problems


def _check_finite(arrays: Mapping[str, np.ndarray], dataset: str) -> None:
    """NaN or inf in any float field is an error (with counts per field)."""
    non_finite = []
    for name, array in arrays.items():
        if np.issubdtype(array.dtype, np.floating):
            nans, infs = int(np.isnan(array).sum()), int(np.isinf(array).sum())
            if nans or infs:
                non_finite.append(f"{name}: {nans} NaN, {infs} inf of {array.size} values")
    if non_finite:
        raise UserError(
            f"Dataset {dataset} has non-finite values (" + "; ".join(non_finite) + "). Training on them "
            "makes every loss NaN. Regenerate or repair the dataset, or choose another with dataset=<name>."
        )


# ---------------------------------------------------------------------- memory


def machine_memory_bytes() -> int:
    """The memory this process can use: physical memory, or the cgroup's limit when lower (0 if unknown)."""
    try:
        total = int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        total = 0
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as handle:
                limit = handle.read().strip()
        except OSError:
            continue
        if limit.isdigit() and 0 < int(limit) < (total or int(limit) + 1):
            total = int(limit)
    return total


def check_fits_in_memory(parts: Mapping[str, int], batch_size: int, available: int = 0) -> None:
    """Raise :class:`UserError` when the networks' lower-bound memory (``parts``: bytes per part,
    :func:`~og_marl_omsd.systems.stage_configs.training_memory_lower_bound`) exceeds ``available``
    (default: this machine's memory)."""
    available = available or machine_memory_bytes()
    needed = sum(parts.values())
    if not available or needed <= available:
        return
    gib = 1 << 30
    detail = ", ".join(f"{name} {size / gib:.1f} GiB" for name, size in parts.items())
    raise UserError(
        f"Bad system configuration: the networks need at least {needed / gib:.1f} GiB to train with "
        f"replay.batch_size={batch_size} ({detail}; weights with their gradients and Adam moments, and the "
        f"batch's activations), more than this machine's {available / gib:.1f} GiB. Choose smaller "
        "system.*_hidden_sizes / system.diffusion_hidden / system.diffusion_width / system.diffusion_blocks or a "
        "smaller replay.batch_size. Nothing was written."
    )
