"""Which datasets a run may generate on first use, and the message when it may not.

Cheap datasets (the bandit's, the ``*-quick`` MaMuJoCo configs: seconds) are generated
when a run first asks for them: their vault config says ``generate_on_first_use: true``.
Every other vault config (the full MaMuJoCo sets: an online MATD3 run plus 1M transitions
per dataset, tens of minutes to hours on a CPU) is generated explicitly, so a run never
starts a long generation silently; a run asking for a missing one stops with exit code 2
and the exact command.
"""

from __future__ import annotations

from typing import Any, Dict

from og_marl_omsd.support.errors import UserError

FIRST_USE_KEY = "generate_on_first_use"


def generates_on_first_use(vault_config: Dict[str, Any]) -> bool:
    return bool(vault_config.get(FIRST_USE_KEY, False))


def generate_command(vault_config: Dict[str, Any], vault_dir: str = "vaults") -> str:
    """The exact command that generates the config's datasets into ``vault_dir``."""
    command = f"python -m og_marl_omsd.datasets generate {vault_config['name']}"
    return command if vault_dir == "vaults" else f"{command} --vault-dir {vault_dir}"


def require_generated(vault_config: Dict[str, Any], location: Any, dataset: str, vault_dir: str, task: str) -> None:
    """Return if ``dataset`` exists or may be generated now; else a UserError with the command.

    Raises:
        UserError: the dataset is missing and its vault config is generated explicitly.
    """
    if location.exists(dataset) or generates_on_first_use(vault_config):
        return
    on_disk = location.available()
    raise UserError(
        f"Dataset {dataset!r} of task {task} is not generated yet (looked in {location.dataset_path(dataset)}"
        f"{'; on disk: ' + ', '.join(on_disk) if on_disk else ''}). Its vault config vault_configs/"
        f"{vault_config['name']}.yaml trains an online MATD3 behaviour policy and records 1M transitions per "
        f"dataset (tens of minutes to hours on a CPU; resumable), so it is not started silently. Generate it "
        f"with:\n    {generate_command(vault_config, vault_dir)}\nthen run the same command again. For a smoke "
        f"run use the tiny datasets: task.vault_config={vault_config['name']}-quick."
    )
