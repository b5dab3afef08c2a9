"""Dataset generation from a vault config (``vault_configs/*.yaml``), deterministic from the file.

``ensure_datasets`` generates what is missing and skips what is complete; each dataset is
written with :func:`og_marl_omsd.datasets.vaults.write_dataset` (temporary uid, renamed
when complete).
"""

from __future__ import annotations

import os
from typing import Any, Dict, Iterable, Optional

import yaml

from og_marl_omsd.datasets.vaults import VaultLocation, write_dataset

VAULT_CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "vault_configs")


def load_vault_config(path: str) -> Dict[str, Any]:
    """Read a vault config by path, or by name from the repository's ``vault_configs/``."""
    candidates = [path, os.path.join(VAULT_CONFIG_DIR, path), os.path.join(VAULT_CONFIG_DIR, f"{path}.yaml")]
    for candidate in candidates:
        if os.path.isfile(candidate):
            with open(candidate) as handle:
                config = yaml.safe_load(handle)
            config.setdefault("name", os.path.splitext(os.path.basename(candidate))[0])
            return config
    raise FileNotFoundError(f"No vault config {path!r} (looked in the working directory and {VAULT_CONFIG_DIR}).")


def location_of(config: Dict[str, Any], rel_dir: str = "vaults") -> VaultLocation:
    return VaultLocation(config["source"], config["env"], config["scenario"], rel_dir)


def ensure_datasets(config_path: str, datasets: Optional[Iterable[str]] = None, rel_dir: str = "vaults") -> VaultLocation:
    """Generate the config's datasets (all, or those named) that are not complete yet."""
    config = load_vault_config(config_path)
    location = location_of(config, rel_dir)
    wanted = list(config["datasets"]) if datasets is None else list(datasets)
    unknown = [name for name in wanted if name not in config["datasets"]]
    if unknown:
        raise KeyError(f"Vault config {config['name']} defines no dataset {unknown}; it defines {list(config['datasets'])}.")
    for name in wanted:
        if location.exists(name):
            continue
        spec = config["datasets"][name]
        print(f"[datasets] generating {location.dataset_path(name)} from {config['name']}", flush=True)
        if config["env"] == "bandit":
            from og_marl_omsd.environments.bandit import generate_bandit_experience

            experience = generate_bandit_experience(spec["num_samples"], spec["mean"], spec["std"], spec["seed"])
        else:
            raise ValueError(f"No dataset generator for env {config['env']!r}.")
        write_dataset(location, name, experience, metadata={"vault_config": config["name"], **spec})
        print(f"[datasets] wrote {location.dataset_path(name)}", flush=True)
    return location
