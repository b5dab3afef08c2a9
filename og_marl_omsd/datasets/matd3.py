"""Online MATD3: the behaviour-policy trainer behind the MaMuJoCo datasets.

Decentralised deterministic actors (one MLP per agent, on the agent's own observation)
and a centralised twin critic on the global state and the joint action, trained on the
shared team reward as in TD3 (clipped double Q, target policy smoothing, delayed actor
updates, Polyak-averaged targets). Exploration: uniform random joint actions for
``warmup_steps``, then the actors plus Gaussian noise.

Everything random is drawn from one numpy generator seeded by the caller (network
initialisation, exploration noise, replay batches, target-smoothing noise) and every
environment episode ``k`` is reset with ``seed + k``; with TF's ops deterministic on one
thread, a run is a function of its config and seed, and it stays so across resumes.

Working directory (``work_dir``)::

    config.json                  the run's config (a resume with another config is refused)
    checkpoints/LATEST           name of the newest complete checkpoint (the commit point)
    checkpoints/step-<step>/     networks + optimisers (tf.train.Checkpoint) and state.json,
                                 whose run_state is the run's counters, rng state and curves
    replay/rows-<a>-<b>.npz      replay rows [a, b): written once, just before the checkpoint of b
    policies/step-<step>.npz     actor weights at every evaluation (and final.npz)
    evaluations.json             (step, mean evaluation return) of every evaluation
    COMPLETE                     the final result, written last

``checkpoints/`` is an :class:`og_marl_omsd.support.checkpoints.StageCheckpoint`, the engine of the
training stages: a save is atomic, the previous checkpoint is kept, and a damaged newest
one falls back to it with a message (replay rows written after the restored checkpoint are
deleted and written again, identically). Checkpoints are taken at episode ends only, so a
resumed run restarts with a fresh episode exactly as the uninterrupted run would. A work
directory from before this layout (``LATEST`` and ``ckpt-<step>/`` at its top) still resumes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from og_marl_omsd.datasets.matd3_config import MATD3Config
from og_marl_omsd.datasets.matd3_learner import MATD3, FrozenActors, ReplayBuffer, actor_sizes, save_actor_weights
from og_marl_omsd.datasets.rollouts import run_episodes
from og_marl_omsd.support.checkpoints import LATEST, StageCheckpoint
from og_marl_omsd.support.files import write_json

__all__ = [
    "LATEST",
    "MATD3",
    "BehaviourTraining",
    "FrozenActors",
    "MATD3Config",
    "ReplayBuffer",
    "actor_sizes",
    "medium_step",
    "run_episodes",
    "save_actor_weights",
]

CHECKPOINTS = "checkpoints"  # the StageCheckpoint directory under work_dir


class BehaviourTraining:
    """A resumable MATD3 run in ``work_dir`` (see the module docstring for the layout)."""

    def __init__(
        self,
        work_dir: str,
        make_env: Callable[[int], Any],
        config: MATD3Config,
        seed: int,
        run_identity: Optional[Dict[str, Any]] = None,
        log: Callable[[str], None] = print,
    ):
        self.work_dir = work_dir
        self.make_env = make_env
        self.config = config
        self.seed = int(seed)
        self.log = log
        self.identity = {"matd3": config.to_dict(), "seed": self.seed, **(run_identity or {})}

    # -- files
    def _path(self, *parts: str) -> str:
        return os.path.join(self.work_dir, *parts)

    def policy_path(self, step: Optional[int]) -> str:
        return self._path("policies", "final.npz" if step is None else f"step-{step:09d}.npz")

    def evaluations(self) -> List[Tuple[int, float]]:
        path = self._path("evaluations.json")
        if not os.path.isfile(path):
            return []
        with open(path) as handle:
            return [(int(step), float(value)) for step, value in json.load(handle)]

    def is_complete(self) -> bool:
        return os.path.isfile(self._path("COMPLETE"))

    def final_result(self) -> Dict[str, Any]:
        with open(self._path("COMPLETE")) as handle:
            return json.load(handle)

    def replay_experience(self, end: int) -> Dict[str, Any]:
        """The replay buffer's first ``end`` transitions (from the saved rows) as OG-MARL
        experience arrays: the Medium-Replay dataset when ``end`` is the Medium step."""
        parts = []
        for file_name in sorted(os.listdir(self._path("replay"))):
            if not file_name.startswith("rows-") or file_name.endswith(".tmp.npz"):  # .tmp.npz: an older writer's
                continue
            start, stop = (int(part) for part in file_name[len("rows-") : -len(".npz")].split("-"))
            if start >= end:
                continue
            with np.load(self._path("replay", file_name)) as stored:
                parts.append(
                    (
                        start,
                        {
                            key: stored[key][: end - start]
                            for key in ("observations", "actions", "rewards", "terminals", "truncations", "states")
                        },
                    )
                )
        parts.sort(key=lambda part: part[0])
        covered = sum(part["actions"].shape[0] for _, part in parts)
        if covered != end:
            raise RuntimeError(
                f"The saved replay rows in {self._path('replay')} cover {covered} of the first {end} steps."
            )
        experience: Dict[str, Any] = {
            key: np.concatenate([part[key] for _, part in parts])
            for key in ("observations", "actions", "rewards", "terminals", "truncations")
        }
        experience["infos"] = {"state": np.concatenate([part["states"] for _, part in parts])}
        return experience

    def _check_identity(self) -> None:
        os.makedirs(self.work_dir, exist_ok=True)
        path = self._path("config.json")
        if os.path.isfile(path):
            with open(path) as handle:
                stored = json.load(handle)
            if stored != json.loads(json.dumps(self.identity)):
                raise RuntimeError(
                    f"{self.work_dir} holds a behaviour run with another config ({stored}); it is kept. "
                    f"Move that directory aside to start over with {self.identity}, or generate with the config "
                    "that made it."
                )
        else:
            write_json(path, self.identity, indent=1)

    def _checkpoint(self, learner: MATD3, run_state: "_RunState") -> StageCheckpoint:
        return StageCheckpoint(
            self.work_dir,
            CHECKPOINTS,
            self.config.checkpoint_every,
            trackables=learner.trackables,
            run_state=run_state,
            label="MATD3 behaviour",
        )

    def _save_checkpoint(self, learner: MATD3, replay: ReplayBuffer, state: Dict[str, Any]) -> None:
        """Write the replay rows since the last checkpoint, then the checkpoint of ``state``."""
        step = state["step"]
        rows_saved = state["rows_saved"]
        if step > rows_saved:
            replay.save_rows(self._path("replay", f"rows-{rows_saved:09d}-{step:09d}.npz"), rows_saved, step)
            state["rows_saved"] = step
        self._checkpoint(learner, _RunState(state)).save(step, self.config.total_steps)
        if os.path.isfile(self._path(LATEST)):  # a resumed run of the older layout: its checkpoint is superseded
            os.remove(self._path(LATEST))
        for name in os.listdir(self.work_dir):
            if name.startswith("ckpt-"):
                shutil.rmtree(self._path(name), ignore_errors=True)

    def _restore(self, learner: MATD3, replay: ReplayBuffer) -> Optional[Dict[str, Any]]:
        """Load the latest readable checkpoint and the replay rows it covers; delete replay
        files written after it (the resumed run writes them again, identically)."""
        run_state = _RunState({})
        self._checkpoint(learner, run_state).restore(self.config.total_steps)
        state = run_state.state or self._restore_legacy(learner)
        rows_saved = 0 if state is None else state["rows_saved"]
        for file_name in sorted(os.listdir(self._path("replay"))):
            path = self._path("replay", file_name)
            if not file_name.startswith("rows-") or file_name.endswith(".tmp.npz"):  # temporaries of a killed write
                os.remove(path)
                continue
            start, end = (int(part) for part in file_name[len("rows-") : -len(".npz")].split("-"))
            if end <= rows_saved:
                replay.load_rows(path, start)
            else:
                os.remove(path)
        if state is None:
            return None
        replay.size = state["step"]
        return state

    def _restore_legacy(self, learner: MATD3) -> Optional[Dict[str, Any]]:
        """The checkpoint of a work directory written before ``checkpoints/`` (``LATEST`` naming
        a ``ckpt-<step>/`` at the top), or ``None``; its next save uses the new layout."""
        if not os.path.isfile(self._path(LATEST)):
            return None
        with open(self._path(LATEST)) as handle:
            name = handle.read().strip()
        learner.checkpoint.read(self._path(name, "networks")).assert_existing_objects_matched()
        with open(self._path(name, "state.json")) as handle:
            return json.load(handle)

    # -- the run
    def run(self) -> Dict[str, Any]:
        """Train to the budget (or the target return), resuming from the latest checkpoint.

        Returns:
            ``{"final_step", "final_return", "evaluations"}`` (also stored in ``COMPLETE``).
        """
        self._check_identity()  # also before reusing a finished run: it must be this config's
        if self.is_complete():
            return self.final_result()
        session = self._start()
        from og_marl_omsd.support import progress

        state = session.state
        bar = progress.Progress("matd3", self.config.total_steps, start=state["step"])  # ETA: the whole budget
        while state["step"] < self.config.total_steps and not state["stopped_early"]:
            episode_return = self._play_episode(session)
            state["episodes"] += 1
            state["episode_returns"].append([state["step"], episode_return])
            metrics = {"train_return": episode_return, "evaluation_return": state["evaluations"][-1][1]}
            if "critic_loss" in session.logs:  # only once training has started (no loss before)
                metrics["critic_loss"] = session.logs["critic_loss"]
            bar.update(state["step"], metrics)
            self._after_episode(session, episode_return)
        bar.close()
        session.env.close()
        save_actor_weights(self.policy_path(None), session.learner.actor_weights())
        final_return = state["evaluations"][-1][1]
        result = {"final_step": state["step"], "final_return": final_return, "evaluations": state["evaluations"]}
        write_json(self._path("COMPLETE"), result, indent=1)
        return result

    def _start(self) -> "_Session":
        """The learner, replay and state of a fresh run, or of the latest checkpoint."""
        os.makedirs(self._path("replay"), exist_ok=True)
        os.makedirs(self._path("policies"), exist_ok=True)
        config = self.config
        probe = self.make_env(self.seed)
        agents = probe.agents
        num_agents, observation_size = len(agents), probe.observation_shape[0]
        state_size, num_actions = probe.state_shape[0], probe.num_actions
        probe.close()
        rng = np.random.default_rng(self.seed)
        learner = MATD3(num_agents, observation_size, state_size, num_actions, config, rng)
        replay = ReplayBuffer(config.total_steps + 1000 * 2, num_agents, observation_size, state_size, num_actions)
        state = self._restore(learner, replay)
        if state is None:
            state = {
                "step": 0,
                "episodes": 0,
                "rows_saved": 0,
                "evaluations": [],
                "episode_returns": [],
                "stopped_early": False,
            }
        else:
            rng.bit_generator.state = state["rng"]
            self.log(f"[matd3] resumed at step {state['step']} ({state['episodes']} episodes) from {self.work_dir}")
        training_env = self.make_env(self.seed)
        training_env._resets = state["episodes"]  # reset k uses seed + k: continue the sequence
        session = _Session(
            learner=learner,
            replay=replay,
            rng=rng,
            state=state,
            env=training_env,
            agents=agents,
            num_actions=num_actions,
            policy=FrozenActors(learner.actor_weights()),  # refreshed after every training call
            pending_updates=int(state.get("pending_updates", 0)),  # env steps not yet trained on
            next_evaluation=(state["step"] // config.evaluate_every + 1) * config.evaluate_every,
            next_checkpoint=(state["step"] // config.checkpoint_every + 1) * config.checkpoint_every,
            started=time.time(),
            started_step=state["step"],
        )
        if state["step"] == 0:
            self._evaluate(learner, state)
        return session

    def _play_episode(self, session: "_Session") -> float:
        """One training episode (exploration, replay rows, the training calls it is due); its return."""
        from og_marl_omsd.models.losses import team_reward

        config, state, rng, agents = self.config, session.state, session.rng, session.agents
        observations_dict, info = session.env.reset()
        observations = np.stack([observations_dict[agent] for agent in agents])
        global_state = info["state"]
        episode_return = 0.0
        while True:
            if state["step"] < config.warmup_steps:
                actions = rng.uniform(-1.0, 1.0, (len(agents), session.num_actions))
            else:
                actions = session.policy(observations[None])[0]
                actions = actions + config.exploration_noise * rng.standard_normal(actions.shape)
            actions = np.clip(actions, -1.0, 1.0).astype("float32")
            next_dict, rewards, terminals, truncations, info = session.env.step(
                {agent: actions[n] for n, agent in enumerate(agents)}
            )
            next_observations = np.stack([next_dict[agent] for agent in agents])
            reward = np.array([rewards[agent] for agent in agents], "float32")
            terminal = np.array([terminals[agent] for agent in agents], "float32")
            truncation = np.array([truncations[agent] for agent in agents], "float32")
            session.replay.add(
                observations=observations,
                actions=actions,
                rewards=reward,
                terminals=terminal,
                truncations=truncation,
                states=global_state,
                next_observations=next_observations,
                next_states=info["state"],
            )
            state["step"] += 1
            episode_return += float(team_reward(reward))
            observations, global_state = next_observations, info["state"]
            if state["step"] >= config.warmup_steps:
                self._train_when_due(session)
            if terminal.any() or truncation.any() or state["step"] >= config.total_steps:
                return episode_return

    def _train_when_due(self, session: "_Session") -> None:
        """Count one env step; every ``train_every`` steps, ``train_every * updates_per_step`` updates."""
        config = self.config
        session.pending_updates += 1
        if session.pending_updates >= config.train_every:
            num_updates = int(round(session.pending_updates * config.updates_per_step))
            batches = session.replay.sample(session.rng, num_updates, config.batch_size)
            smoothing = config.target_noise * session.rng.standard_normal(batches["actions"].shape)
            session.logs = session.learner.train(batches, smoothing.astype("float32"))
            session.policy = FrozenActors(session.learner.actor_weights())
            session.pending_updates = 0

    def _after_episode(self, session: "_Session", episode_return: float) -> None:
        """The evaluation (and early stop) and the checkpoint that are due after an episode."""
        config, state = self.config, session.state
        if state["step"] >= session.next_evaluation or state["step"] >= config.total_steps:
            session.next_evaluation = (state["step"] // config.evaluate_every + 1) * config.evaluate_every
            value = self._evaluate(session.learner, state)
            # One progress format (the [matd3] progress lines); this line only reports the evaluation.
            self.log(
                f"[matd3] evaluation at step {state['step']}/{config.total_steps}: return {value:.1f}"
                + ("" if config.target_return is None else f" (stops at return {config.target_return})")
            )
            if config.target_return is not None and value >= config.target_return:
                state["stopped_early"] = True
                self.log(f"[matd3] evaluation return {value:.1f} reached the target {config.target_return}; stopping")
        if state["step"] >= session.next_checkpoint or state["step"] >= config.total_steps or state["stopped_early"]:
            session.next_checkpoint = (state["step"] // config.checkpoint_every + 1) * config.checkpoint_every
            state["rng"] = session.rng.bit_generator.state
            state["pending_updates"] = session.pending_updates
            self._save_checkpoint(session.learner, session.replay, state)

    def _evaluate(self, learner: MATD3, state: Dict[str, Any]) -> float:
        """Mean return of the deterministic actors over ``evaluation_episodes`` fixed-seed episodes;
        the actors are saved as ``policies/step-<step>.npz``."""
        weights = learner.actor_weights()
        save_actor_weights(self.policy_path(state["step"]), weights)
        returns, _ = run_episodes(
            self.make_env,
            FrozenActors(weights),
            self.config.evaluation_episodes,
            seed=self.seed + 1_000_000,
            num_envs=self.config.evaluation_episodes,
        )
        value = float(returns.mean())
        state["evaluations"].append([state["step"], value])
        write_json(self._path("evaluations.json"), state["evaluations"], indent=None)
        return value


class _RunState:
    """The run-state adapter of a MATD3 checkpoint: the state dict (step, episodes, rows saved,
    rng state, evaluations, episode returns, pending updates, early stop) goes into the
    checkpoint's ``state.json`` and comes back on a restore."""

    def __init__(self, state: Dict[str, Any]):
        self.state = state

    def checkpoint_state(self) -> Dict[str, Any]:
        return json.loads(json.dumps(self.state))

    def restore_checkpoint_state(self, state: Dict[str, Any]) -> None:
        self.state = dict(state)


@dataclasses.dataclass
class _Session:
    """What one :meth:`BehaviourTraining.run` carries from episode to episode."""

    learner: MATD3
    replay: ReplayBuffer
    rng: np.random.Generator
    state: Dict[str, Any]  # what a checkpoint stores (step, episodes, evaluations, ...)
    env: Any
    agents: Sequence[str]
    num_actions: int
    policy: FrozenActors
    pending_updates: int
    next_evaluation: int
    next_checkpoint: int
    started: float
    started_step: int
    logs: Dict[str, float] = dataclasses.field(default_factory=dict)


def medium_step(evaluations: Sequence[Sequence[float]], final_return: float, fraction: float) -> Tuple[int, float]:
    """The first evaluation step (after step 0) whose return reaches ``fraction`` of
    ``final_return`` (OMAR's Medium: the policy when it first reaches about a third of the
    final return). If none does (a run that did not learn), the best evaluation after step 0.

    Returns:
        ``(step, evaluation return)``.
    """
    candidates = [(int(step), float(value)) for step, value in evaluations if step > 0]
    if not candidates:
        raise ValueError("No evaluation after step 0 to take the Medium policy from.")
    threshold = fraction * final_return
    for step, value in candidates:
        if value >= threshold:
            return step, value
    return max(candidates, key=lambda candidate: candidate[1])
