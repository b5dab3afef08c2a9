"""Systems registered by name as ``og_marl.systems`` entry points, loaded lazily.

Any installed distribution can add a system by declaring, in its own setup.cfg::

    [options.entry_points]
    og_marl.systems =
        my_system = my_package.my_module:MySystem

``MySystem`` subclasses OG-MARL's ``BaseOfflineSystem`` (for a score-regularised variant,
:class:`og_marl_omsd.systems.base.ScoreRegularisedSystem`). Entry points are read from the
installed metadata, so a new one appears after (re)installing its distribution.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Dict

GROUP = "og_marl.systems"


class UnknownSystemError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def available_systems() -> Dict[str, EntryPoint]:
    """Registered system names and their (not yet imported) entry points."""
    return {entry.name: entry for entry in entry_points(group=GROUP)}


def load_system(name: str) -> type:
    """Import and return the system class registered as ``name``."""
    systems = available_systems()
    if name not in systems:
        known = ", ".join(sorted(systems)) or "none (is og-marl-omsd installed? pip install -e .)"
        raise UnknownSystemError(
            f"Unknown system {name!r}. Registered systems ({GROUP} entry points): {known}. "
            "A distribution registers more in its setup.cfg [options.entry_points]."
        )
    return systems[name].load()
