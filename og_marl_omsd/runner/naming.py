"""Names in marl-eval's hierarchy ``env / task / algorithm / seed_N``: one rule for every file.

marl-eval's ``concatenate_json_files`` merges files by these names and renumbers a clashing
seed, so the names must carry everything that tells two runs' results apart: the task name
carries the dataset (``2halfcheetah-Medium``), the algorithm name carries the variant
(``omsd-mode_seeking``) and any setting that is not the system's default, beta first
(``omsd@beta=0.01``). A run's ``metrics.json`` and the comparison's trees use these
functions; the exported ``og_marl/run.py`` carries them too.
"""

from __future__ import annotations

from typing import Any, Mapping, Tuple


def algorithm_name(record: Mapping[str, Any]) -> str:
    """``system`` or ``system-variant``."""
    return f"{record['system']}-{record['variant']}" if record.get("variant") else str(record["system"])


def split_algorithm_name(name: str) -> Tuple[str, str]:
    """``(system, variant)`` of an :func:`algorithm_name`, with or without its settings
    (``omsd-mode_seeking@beta=0.01`` -> ``("omsd", "mode_seeking")``; variant ``""`` for a plain system)."""
    system, _, variant = name.split("@", 1)[0].partition("-")
    return system, variant


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
