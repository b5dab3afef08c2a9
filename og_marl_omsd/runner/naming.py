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

# Defined in og_marl_run (exported as og_marl/run.py, whose metrics.json uses them).
from og_marl_omsd.upstream.og_marl_run import (  # noqa: F401 (re-exported)
    marl_eval_task_name,
    setting_text,
    with_settings,
)


def algorithm_name(record: Mapping[str, Any]) -> str:
    """``system`` or ``system-variant``."""
    return f"{record['system']}-{record['variant']}" if record.get("variant") else str(record["system"])


def split_algorithm_name(name: str) -> Tuple[str, str]:
    """``(system, variant)`` of an :func:`algorithm_name`, with or without its settings
    (``omsd-mode_seeking@beta=0.01`` -> ``("omsd", "mode_seeking")``; variant ``""`` for a plain system)."""
    system, _, variant = name.split("@", 1)[0].partition("-")
    return system, variant
