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

import os

# The entry-point lookup: defined in og_marl_run (exported as og_marl/run.py).
from og_marl_omsd.upstream.og_marl_run import (  # noqa: F401 (re-exported)
    GROUP,
    UnknownSystemError,
    available_systems,
    load_registered_system,
)
from og_marl_omsd.upstream.og_marl_systems import INSTALL_HINT, OG_MARL_SYSTEMS, og_marl_package_dir


def load_system(name: str) -> type:
    """The system class named ``name``: a registered entry point, else one of OG-MARL's own offline
    systems (``iddpg_bc``, ``maddpg_cql``, ``omar``, ``continuous_bc``) when OG-MARL is usable."""
    if name in available_systems() or name not in OG_MARL_SYSTEMS:
        try:
            return load_registered_system(name)
        except UnknownSystemError as error:
            raise UnknownSystemError(
                f"{error} OG-MARL's own systems (run here when OG-MARL is installed): "
                f"{', '.join(sorted(OG_MARL_SYSTEMS))}."
            ) from None
    if og_marl_package_dir() is None:
        why = (
            "OG_MARL_OMSD_HOST=standalone keeps it out of this process"
            if os.environ.get("OG_MARL_OMSD_HOST", "").strip().lower() == "standalone"
            else "it is not installed"
        )
        raise UnknownSystemError(
            f"System {name!r} is OG-MARL's ({OG_MARL_SYSTEMS[name].description}), and OG-MARL cannot be used here: "
            f"{why}. Install OG-MARL from its repository: {INSTALL_HINT}; then run the same command "
            "(with OG_MARL_OMSD_HOST unset or =og_marl)."
        )
    from og_marl_omsd import host

    return host.og_marl_system(OG_MARL_SYSTEMS[name].import_path, OG_MARL_SYSTEMS[name].class_name)
