"""OG-MARL's own offline TF2 systems, by name, with configs from their YAML defaults.

OG-MARL has no registry: each baseline is a script with a hydra config beside it
(``og_marl/baselines/tf2_systems/offline/<file>.py`` and ``configs/<file>.yaml``). This
module names the ones a comparison uses and builds the runner's config for each from that
YAML file, read from OG-MARL's source tree (found without importing ``og_marl``; only
:mod:`og_marl_omsd.host` imports it). The same catalogue writes the entry points and the
config files of the export.
"""

from __future__ import annotations

import ast
import importlib.util
import os
from typing import Any, Dict, NamedTuple, Optional, cast

OFFLINE_DIR = "baselines/tf2_systems/offline"  # inside the og_marl package
INSTALL_HINT = (
    "git clone https://github.com/instadeepai/og-marl && pip install --no-deps -e og-marl && "
    "pip install wandb (OG-MARL is not on PyPI; its pinned requirements are not needed here)"
)


class OGMarlSystem(NamedTuple):
    module: str  # file name in og_marl/baselines/tf2_systems/offline/ (and of its configs/<module>.yaml)
    class_name: str
    description: str

    @property
    def import_path(self) -> str:
        return f"og_marl.{OFFLINE_DIR.replace('/', '.')}.{self.module}"

    @property
    def entry_point(self) -> str:
        return f"{self.import_path}:{self.class_name}"


OG_MARL_SYSTEMS: Dict[str, OGMarlSystem] = {
    "iddpg_bc": OGMarlSystem("iddpg_bc", "IDDPGBCSystem", "independent DDPG + behaviour cloning (TD3+BC style)"),
    "maddpg_cql": OGMarlSystem("maddpg_cql", "MADDPGCQLSystem", "MADDPG with a centralised critic + CQL"),
    "omar": OGMarlSystem("omar", "OMARSystem", "OMAR: CQL critic + zeroth-order actor search"),
    "continuous_bc": OGMarlSystem("continuous_bc", "ContinuousActionBehaviourCloning", "behaviour cloning"),
}


def og_marl_package_dir() -> Optional[str]:
    """OG-MARL's package directory when this process may use it, else ``None``.

    Follows :mod:`og_marl_omsd.host`'s choice (``OG_MARL_OMSD_HOST=standalone`` never uses
    OG-MARL) without importing it.
    """
    if os.environ.get("OG_MARL_OMSD_HOST", "auto").strip().lower() == "standalone":
        return None
    spec = importlib.util.find_spec("og_marl")
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def replay_batch_size(package_dir: str) -> Optional[int]:
    """The default ``batch_size`` of OG-MARL's ``FlashbaxReplayBuffer`` (what its scripts train with)."""
    path = os.path.join(package_dir, "replay_buffers.py")
    if not os.path.isfile(path):
        return None
    with open(path) as handle:
        tree = ast.parse(handle.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "FlashbaxReplayBuffer":
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    arguments = item.args.args[-len(item.args.defaults) :] if item.args.defaults else []
                    for argument, default in zip(arguments, item.args.defaults):
                        if argument.arg == "batch_size" and isinstance(default, ast.Constant):
                            return int(default.value)  # type: ignore[arg-type]
    return None


def system_config(name: str, package_dir: str) -> Dict[str, Any]:
    """The runner's config for OG-MARL's system ``name``, from its own YAML defaults.

    ``{"system": {"name": name, <its system: section>}, "replay": {"sequence_length": <its
    replay.sequence_length>, "batch_size": <its buffer's default>}}`` (package ``_global_``:
    the system sets the replay it was tuned with, e.g. sequences of 20 for the recurrent ones).
    """
    from omegaconf import OmegaConf  # its YAML loader reads 3e-4 as a number, as hydra does

    system = OG_MARL_SYSTEMS[name]
    path = os.path.join(package_dir, OFFLINE_DIR, "configs", f"{system.module}.yaml")
    defaults = cast(Dict[str, Any], OmegaConf.to_container(OmegaConf.load(path), resolve=True))
    config: Dict[str, Any] = {"system": {"name": name, **(defaults.get("system") or {})}, "replay": {}}
    replay = defaults.get("replay") or {}
    if "sequence_length" in replay:
        config["replay"]["sequence_length"] = int(replay["sequence_length"])
    batch_size = replay_batch_size(package_dir)
    if batch_size is not None:
        config["replay"]["batch_size"] = batch_size
    return config


def register_configs() -> None:
    """Make ``system=<name>`` compose for every system of the catalogue (hydra ConfigStore).

    With OG-MARL usable the config carries its YAML defaults; without it only the name, so
    that the runner (not hydra) reports what to install.
    """
    from hydra.core.config_store import ConfigStore

    package_dir = og_marl_package_dir()
    store = ConfigStore.instance()
    for name in OG_MARL_SYSTEMS:
        node: Dict[str, Any] = {"system": {"name": name}}
        if package_dir is not None:
            try:
                node = system_config(name, package_dir)
            except (OSError, ValueError):  # an OG-MARL without this system: the runner says so
                pass
        store.store(group="system", name=name, node=node, package="_global_", provider="og-marl-omsd")
