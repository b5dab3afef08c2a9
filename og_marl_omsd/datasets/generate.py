"""Dataset generation from a vault config (``vault_configs/*.yaml``), deterministic from the file.

``ensure_datasets`` generates what is missing and skips what is complete; each dataset is
written with :func:`og_marl_omsd.datasets.vaults.write_dataset` (temporary uid, renamed
when complete), so an interrupted generation never leaves a dataset that is later read.

Environments:

- ``bandit``: the paper's 2-agent bandit mixture (one spec per dataset).
- ``gymnasium_mamujoco``: OMAR's protocol. An online MATD3 run (config section
  ``behaviour``, see :class:`og_marl_omsd.datasets.matd3.MATD3Config`) trains the behaviour
  policies, resumably, under ``<rel_dir>/.behaviour/<source>/<env>/<scenario>``. Then, with
  Gaussian action noise ``action_noise`` and ``transitions`` steps per dataset (both may be
  overridden per dataset):

  - ``Random``: a randomly initialised policy (no training needed);
  - ``Medium``: the policy at the first evaluation reaching ``medium_return_fraction`` of
    the final evaluation return;
  - ``Medium-Replay``: the whole MATD3 replay buffer up to that evaluation;
  - ``Expert``: the final policy.

  And datasets of a team with several coordinated behaviours (policy ``team_switch``, see
  :mod:`og_marl_omsd.datasets.team_switch`): the Expert policies of the MATD3 runs seeded
  ``teams`` (each trained with the same ``behaviour`` config; a seed other than ``seed``
  trains under ``<behaviour dir>-seed<k>``), switched every ``switch_every`` steps by a latent
  that all agents share (``shared_switch: true``, the coordinated dataset) or that each agent
  draws on its own (``false``, its matched control: same behaviours, same period).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any, Callable, Dict, Iterable, Optional

import numpy as np
import yaml

from og_marl_omsd.datasets.vaults import VaultLocation, episode_returns, remove_stale_partials, write_dataset

# Package data: ``og_marl_omsd/vault_configs`` is a link to the checkout's top-level
# ``vault_configs/`` (edit them there); an installed wheel holds copies of the files.
VAULT_CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "vault_configs")


def load_vault_config(path: str) -> Dict[str, Any]:
    """Read a vault config by path, or by name from the package's ``vault_configs/``."""
    candidates = [path, os.path.join(VAULT_CONFIG_DIR, path), os.path.join(VAULT_CONFIG_DIR, f"{path}.yaml")]
    for candidate in candidates:
        if os.path.isfile(candidate):
            with open(candidate) as handle:
                config = yaml.safe_load(handle)
            config.setdefault("name", os.path.splitext(os.path.basename(candidate))[0])
            return config
    raise FileNotFoundError(f"No vault config {path!r} (looked in the working directory and {VAULT_CONFIG_DIR}).")


def location_of(config: Dict[str, Any], rel_dir: str = "vaults") -> VaultLocation:
    return VaultLocation(config.get("source", DEFAULT_SOURCE), config["env"], config["scenario"], rel_dir)


DEFAULT_SOURCE = "og_marl_omsd"
MAMUJOCO_POLICIES = ("random", "medium", "medium_replay", "expert", "team_switch")
MAMUJOCO_DEFAULTS = {
    "seed": 0,
    "action_noise": 0.2,
    "transitions": 1_000_000,
    "medium_return_fraction": 1 / 3,
    "collection_envs": 10,
}
MAMUJOCO_KEYS = {
    "name",
    "source",
    "env",
    "scenario",
    "datasets",
    "behaviour",
    "generate_on_first_use",
    *MAMUJOCO_DEFAULTS,
}
DATASET_KEYS = {"policy", "action_noise", "transitions", "teams", "switch_every", "shared_switch"}
TEAM_SWITCH_KEYS = ("teams", "switch_every", "shared_switch")


def config_hash(config: Dict[str, Any]) -> str:
    """A short hash of everything in a vault config that shapes the data."""
    relevant = {key: value for key, value in config.items() if key not in ("name", "generate_on_first_use")}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:12]


def ensure_datasets(
    config_path: str, datasets: Optional[Iterable[str]] = None, rel_dir: str = "vaults"
) -> VaultLocation:
    """Generate the config's datasets (all, or those named) that are not complete yet."""
    config = load_vault_config(config_path)
    location = location_of(config, rel_dir)
    wanted = list(config["datasets"]) if datasets is None else list(datasets)
    unknown = [name for name in wanted if name not in config["datasets"]]
    if unknown:
        raise KeyError(
            f"Vault config {config['name']} defines no dataset {unknown}; it defines {list(config['datasets'])}."
        )
    if config["env"] == "gymnasium_mamujoco":
        return MaMuJoCoDatasets(config, location).ensure(wanted)
    if config["env"] != "bandit":
        raise ValueError(f"No dataset generator for env {config['env']!r}; known: bandit, gymnasium_mamujoco.")
    if all(location.exists(name) for name in wanted):
        return location
    with generation_lock(location.path):  # a second process waits here, then finds the datasets complete
        remove_stale_partials(location)
        for name in wanted:
            if location.exists(name):
                continue
            spec = config["datasets"][name]
            print(f"[datasets] generating {location.dataset_path(name)} from {config['name']}", flush=True)
            from og_marl_omsd.environments.bandit import generate_bandit_experience

            experience = generate_bandit_experience(spec["num_samples"], spec["mean"], spec["std"], spec["seed"])
            write_dataset(location, name, experience, metadata={"vault_config": config["name"], **spec})
            print(f"[datasets] wrote {location.dataset_path(name)}", flush=True)
    return location


def generation_lock(directory: str) -> Any:
    """An exclusive lock on ``<directory>.lock``: one generation at a time per scenario (two
    processes would write the same data). A second process prints who holds it, waits for it
    to finish, and then finds the datasets complete; the lock dies with its holder."""
    from og_marl_omsd.support.files import file_lock

    path = f"{os.path.abspath(directory)}.lock"

    def waiting(holder: str) -> None:
        print(
            f"[datasets] another process (pid {holder}) is generating these datasets ({path}); waiting for it "
            "to finish",
            flush=True,
        )

    return file_lock(path, waiting=waiting)


def _check_team_switch(name: str, spec: Dict[str, Any]) -> None:
    """A ``team_switch`` dataset names >= 2 distinct MATD3 seeds, a period >= 1 and the switch kind."""
    missing = [key for key in TEAM_SWITCH_KEYS if key not in spec]
    if missing:
        raise ValueError(f"Dataset {name}: policy team_switch needs {missing} (see og_marl_omsd.datasets.team_switch).")
    teams = spec["teams"]
    if not isinstance(teams, list) or len(teams) < 2 or len(set(teams)) != len(teams):
        raise ValueError(f"Dataset {name}: teams must list at least 2 distinct MATD3 seeds, got {teams!r}.")
    if not all(isinstance(seed, int) and seed >= 0 for seed in teams):
        raise ValueError(f"Dataset {name}: teams must be non-negative integer seeds, got {teams!r}.")
    if not isinstance(spec["switch_every"], int) or spec["switch_every"] < 1:
        raise ValueError(f"Dataset {name}: switch_every must be an integer >= 1, got {spec['switch_every']!r}.")
    if not isinstance(spec["shared_switch"], bool):
        raise ValueError(f"Dataset {name}: shared_switch must be true or false, got {spec['shared_switch']!r}.")


def _log(message: str) -> None:
    print(message, flush=True)


class MaMuJoCoDatasets:
    """OMAR-protocol datasets of one MaMuJoCo vault config (see the module docstring)."""

    def __init__(self, config: Dict[str, Any], location: VaultLocation, log: Callable[[str], None] = _log):
        unknown = sorted(set(config) - MAMUJOCO_KEYS)
        if unknown:
            raise ValueError(f"Unknown vault config keys {unknown}; valid: {', '.join(sorted(MAMUJOCO_KEYS))}.")
        self.config = {**MAMUJOCO_DEFAULTS, **config}
        self.location = location
        self.log = log
        self.seed = int(self.config["seed"])
        for name, spec in self.config["datasets"].items():
            spec = spec or {}
            bad = sorted(set(spec) - DATASET_KEYS)
            if bad:
                raise ValueError(f"Dataset {name}: unknown keys {bad}; valid: {', '.join(sorted(DATASET_KEYS))}.")
            if spec.get("policy") not in MAMUJOCO_POLICIES:
                raise ValueError(
                    f"Dataset {name}: policy must be one of {', '.join(MAMUJOCO_POLICIES)}, not {spec.get('policy')!r}."
                )
            team_keys = sorted(set(spec) & set(TEAM_SWITCH_KEYS))
            if spec["policy"] == "team_switch":
                _check_team_switch(name, spec)
            elif team_keys:
                raise ValueError(f"Dataset {name}: {team_keys} apply only to policy team_switch.")
        from og_marl_omsd.datasets.matd3_config import MATD3Config
        from og_marl_omsd.environments.mamujoco import scenario_spec

        scenario_spec(self.config["scenario"])  # unknown scenario -> ValueError now, not after training
        self.behaviour_config = MATD3Config.from_dict(self.config.get("behaviour"))
        self.hash = config_hash(self.config)

    @property
    def behaviour_dir(self) -> str:
        location = self.location
        return os.path.join(location.rel_dir, ".behaviour", location.source, location.env, location.scenario)

    def behaviour_dir_of(self, seed: int) -> str:
        """The MATD3 run of ``seed``: the config's own seed keeps the historical directory."""
        return self.behaviour_dir if int(seed) == self.seed else f"{self.behaviour_dir}-seed{int(seed)}"

    def make_env(self, seed: int) -> Any:
        from og_marl_omsd.environments.mamujoco import make_mamujoco

        return make_mamujoco(self.config["scenario"], seed=seed)

    def behaviour(self, seed: Optional[int] = None) -> Any:
        from og_marl_omsd.datasets.matd3 import BehaviourTraining

        seed = self.seed if seed is None else int(seed)
        return BehaviourTraining(
            self.behaviour_dir_of(seed),
            self.make_env,
            self.behaviour_config,
            seed,
            run_identity={"scenario": self.config["scenario"]},
            log=self.log,
        )

    def ensure(self, wanted: Iterable[str]) -> VaultLocation:
        """Generate the missing datasets of ``wanted``, holding the scenario's generation lock."""
        with generation_lock(self.behaviour_dir):
            return self._ensure(list(wanted))

    def _ensure(self, wanted: Iterable[str]) -> VaultLocation:
        remove_stale_partials(self.location)
        missing = []
        for name in wanted:
            if self.location.exists(name):
                self.log(f"[datasets] {self.location.dataset_path(name)} is complete; skipping")
            else:
                missing.append(name)
        if not missing:
            return self.location
        policies = {name: self.config["datasets"][name]["policy"] for name in missing}
        seeds = sorted(
            {self.seed for policy in policies.values() if policy != "random"}
            | {int(seed) for name in missing for seed in self.config["datasets"][name].get("teams", [])}
        )
        trainings = {seed: self._train(seed) for seed in seeds}
        for name in missing:
            self._generate(name, policies[name], trainings)
        return self.location

    def _train(self, seed: int) -> Any:
        """The completed MATD3 run of ``seed`` (trained now, or resumed, if needed)."""
        training = self.behaviour(seed)
        started = time.time()
        self.log(
            f"[datasets] behaviour training (MATD3 seed {seed}, up to {self.behaviour_config.total_steps} steps) in "
            f"{self.behaviour_dir_of(seed)}"
        )
        result = training.run()
        self.log(
            f"[datasets] behaviour training done: final evaluation return {result['final_return']:.1f} at "
            f"step {result['final_step']} ({time.time() - started:.0f} s in this call)"
        )
        return training

    def _generate(self, name: str, policy_kind: str, trainings: Dict[int, Any]) -> None:
        from og_marl_omsd.datasets.matd3 import medium_step
        from og_marl_omsd.datasets.matd3_learner import FrozenActors

        spec = self.config["datasets"][name]
        noise = float(spec.get("action_noise", self.config["action_noise"]))
        transitions = int(spec.get("transitions", self.config["transitions"]))
        index = MAMUJOCO_POLICIES.index(policy_kind) + 1
        metadata: Dict[str, Any] = {
            "vault_config": self.config["name"],
            "vault_config_hash": self.hash,
            "scenario": self.config["scenario"],
            "policy": policy_kind,
            "seed": self.seed,
        }
        started = time.time()
        training: Any = trainings.get(self.seed)
        policy: Any
        self.log(f"[datasets] generating {self.location.dataset_path(name)} ({policy_kind} policy)")
        if policy_kind in ("medium", "medium_replay"):
            result = training.final_result()
            fraction = float(self.config["medium_return_fraction"])
            step, value = medium_step(result["evaluations"], result["final_return"], fraction)
            metadata.update(
                policy_step=step,
                policy_evaluation_return=value,
                final_evaluation_return=result["final_return"],
                medium_return_fraction=fraction,
            )
        if policy_kind == "medium_replay":
            experience = training.replay_experience(step)
            metadata.update(transitions=int(step))
        else:
            if policy_kind == "random":
                probe = self.make_env(self.seed)
                policy = FrozenActors.random(
                    probe.observation_shape[0],
                    probe.num_actions,
                    probe.num_agents,
                    self.behaviour_config.hidden_sizes,
                    np.random.default_rng([self.seed, index]),
                )
                probe.close()
            elif policy_kind == "medium":
                policy = FrozenActors.load(training.policy_path(step))
            elif policy_kind == "team_switch":
                from og_marl_omsd.datasets.team_switch import TeamSwitchPolicy

                teams = [int(seed) for seed in spec["teams"]]
                policy = TeamSwitchPolicy(
                    [FrozenActors.load(trainings[seed].policy_path(None)) for seed in teams],
                    switch_every=int(spec["switch_every"]),
                    shared_switch=bool(spec["shared_switch"]),
                    seed=self.seed,
                )
                metadata.update(
                    teams=teams,
                    team_final_evaluation_returns=[trainings[seed].final_result()["final_return"] for seed in teams],
                    switch_every=int(spec["switch_every"]),
                    shared_switch=bool(spec["shared_switch"]),
                )
            else:  # expert
                result = training.final_result()
                policy = FrozenActors.load(training.policy_path(None))
                metadata.update(policy_step=result["final_step"], final_evaluation_return=result["final_return"])
            experience = self._collect(name, policy, noise, transitions, index)
            metadata.update(action_noise=noise, transitions=transitions)
        returns = episode_returns(experience)
        metadata.update(episodes=int(returns.size), episode_return_mean=float(returns.mean()) if returns.size else None)
        path = write_dataset(self.location, name, experience, metadata=metadata)
        self.log(
            f"[datasets] wrote {path}: {experience['actions'].shape[0]} transitions, {returns.size} episodes, "
            f"return {returns.mean():.1f} +- {returns.std():.1f} ({time.time() - started:.0f} s)"
        )

    def _collect(self, name: str, policy: Any, noise: float, transitions: int, index: int) -> Dict[str, Any]:
        """Whole episodes of ``policy`` with noise until at least ``transitions`` steps, cut to
        exactly ``transitions`` (a cut episode keeps no end flag, so it is never counted)."""
        from og_marl_omsd.datasets.rollouts import run_episodes

        envs = int(self.config["collection_envs"])
        rng = np.random.default_rng([self.seed, index, 1])
        base_seed = (self.seed + 1) * 1_000_000_000 + index * 100_000_000
        parts, collected, episodes = [], 0, 0
        from og_marl_omsd.support import progress

        bar = progress.Progress(f"datasets {name}", transitions, unit="transitions")
        while collected < transitions:
            count = max(1, min(envs * 10, -(-(transitions - collected) // 1000)))
            _, experience = run_episodes(
                self.make_env,
                policy,
                count,
                seed=base_seed + episodes,
                noise=noise,
                rng=rng,
                num_envs=envs,
                record=True,
            )
            assert experience is not None  # record=True always returns the experience
            parts.append(experience)
            collected += experience["actions"].shape[0]
            episodes += count
            bar.update(min(collected, transitions), {"episodes": episodes})
        bar.close()
        experience = {
            key: np.concatenate([part[key] for part in parts])[:transitions]
            for key in ("observations", "actions", "rewards", "terminals", "truncations")
        }
        experience["infos"] = {"state": np.concatenate([part["infos"]["state"] for part in parts])[:transitions]}
        return experience
