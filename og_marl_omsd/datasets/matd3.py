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
    LATEST                       name of the newest complete checkpoint (atomic os.replace)
    ckpt-<step>/                 networks + optimisers (tf.train.Checkpoint) and state.json
    replay/rows-<a>-<b>.npz      replay rows [a, b): written once, at the checkpoint after b
    policies/step-<step>.npz     actor weights at every evaluation (and final.npz)
    evaluations.json             (step, mean evaluation return) of every evaluation

Checkpoints are taken at episode ends only, so a resumed run restarts with a fresh
episode exactly as the uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

LATEST = "LATEST"


@dataclasses.dataclass
class MATD3Config:
    """MATD3 hyperparameters and budget (the ``behaviour`` section of a vault config)."""

    total_steps: int = 300_000
    warmup_steps: int = 10_000
    batch_size: int = 100
    hidden_sizes: Tuple[int, ...] = (256, 256)
    actor_learning_rate: float = 1e-3
    critic_learning_rate: float = 1e-3
    discount: float = 0.99
    target_update_rate: float = 0.005
    policy_delay: int = 2
    exploration_noise: float = 0.1
    target_noise: float = 0.2
    target_noise_clip: float = 0.5
    train_every: int = 50  # env steps between training calls
    # gradient updates per env step (update-to-data ratio): each training call does
    # train_every * updates_per_step updates (an integer). Below 1 the learner improves more
    # slowly per env step, so its replay up to Medium (Medium-Replay) holds more transitions.
    updates_per_step: float = 1.0
    evaluate_every: int = 5_000
    evaluation_episodes: int = 5
    checkpoint_every: int = 20_000
    target_return: Optional[float] = None  # stop early once an evaluation reaches it

    @classmethod
    def from_dict(cls, values: Optional[Dict[str, Any]]) -> "MATD3Config":
        values = dict(values or {})
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown MATD3 settings {unknown}; valid: {', '.join(sorted(known))}.")
        if "hidden_sizes" in values:
            values["hidden_sizes"] = tuple(int(size) for size in values["hidden_sizes"])
        config = cls(**values)
        if config.total_steps <= 0 or config.batch_size <= 0 or config.train_every <= 0:
            raise ValueError("total_steps, batch_size and train_every must be positive.")
        if config.evaluate_every <= 0 or config.checkpoint_every <= 0:
            raise ValueError("evaluate_every and checkpoint_every must be positive.")
        updates = config.train_every * config.updates_per_step
        if updates < 1 or abs(updates - round(updates)) > 1e-9:
            raise ValueError(
                f"train_every * updates_per_step must be a positive integer (the updates of one training "
                f"call); got {config.train_every} * {config.updates_per_step} = {updates:g}."
            )
        return config

    def to_dict(self) -> Dict[str, Any]:
        values = dataclasses.asdict(self)
        values["hidden_sizes"] = list(self.hidden_sizes)
        return values


# ------------------------------------------------------------------------------ networks
def _make_modules():
    """The sonnet modules, defined on first use so that importing this file stays cheap."""
    import sonnet as snt
    import tensorflow as tf

    class AgentwiseMLP(snt.Module):
        """``K`` independent MLPs evaluated together: ``(B, K, I) -> (B, K, O)``.

        Used with K = number of agents for the decentralised actors (each agent its own
        weights) and with K = 2 for the twin critic. Weights are drawn uniformly in
        ``+-1/sqrt(fan_in)`` from the given numpy generator.
        """

        def __init__(self, num_heads: int, sizes: Sequence[int], rng: np.random.Generator, name: str):
            super().__init__(name=name)
            self.weights, self.biases = [], []
            for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
                bound = 1.0 / np.sqrt(fan_in)
                self.weights.append(tf.Variable(rng.uniform(-bound, bound, (num_heads, fan_in, fan_out)).astype("float32"), name=f"w{layer}"))
                self.biases.append(tf.Variable(rng.uniform(-bound, bound, (num_heads, fan_out)).astype("float32"), name=f"b{layer}"))

        def __call__(self, inputs):
            hidden = inputs
            for layer, (weight, bias) in enumerate(zip(self.weights, self.biases)):
                hidden = tf.einsum("bki,kio->bko", hidden, weight) + bias
                if layer < len(self.weights) - 1:
                    hidden = tf.nn.relu(hidden)
            return hidden

    return AgentwiseMLP


def actor_sizes(observation_size: int, num_actions: int, hidden_sizes: Sequence[int]) -> List[int]:
    return [observation_size, *hidden_sizes, num_actions]


class MATD3:
    """The MATD3 learner: networks, targets, optimisers and the compiled training step."""

    def __init__(self, num_agents: int, observation_size: int, state_size: int, num_actions: int,
                 config: MATD3Config, rng: np.random.Generator):
        import sonnet as snt
        import tensorflow as tf

        AgentwiseMLP = _make_modules()
        self.config = config
        self.num_agents, self.num_actions = num_agents, num_actions
        hidden = list(config.hidden_sizes)
        critic_input = state_size + num_agents * num_actions
        self.actors = AgentwiseMLP(num_agents, actor_sizes(observation_size, num_actions, hidden), rng, "actors")
        self.critics = AgentwiseMLP(2, [critic_input, *hidden, 1], rng, "twin_critic")
        self.target_actors = AgentwiseMLP(num_agents, actor_sizes(observation_size, num_actions, hidden), rng, "target_actors")
        self.target_critics = AgentwiseMLP(2, [critic_input, *hidden, 1], rng, "target_twin_critic")
        for target, online in ((self.target_actors, self.actors), (self.target_critics, self.critics)):
            for target_variable, variable in zip(target.trainable_variables, online.trainable_variables):
                target_variable.assign(variable)
        self.actor_optimizer = snt.optimizers.Adam(config.actor_learning_rate)
        self.critic_optimizer = snt.optimizers.Adam(config.critic_learning_rate)
        self.actor_optimizer._initialize(self.actors.trainable_variables)  # slots exist before a restore
        self.critic_optimizer._initialize(self.critics.trainable_variables)
        self.updates = tf.Variable(0, dtype=tf.int64, name="updates")
        self.checkpoint = tf.train.Checkpoint(
            actors=self.actors, critics=self.critics, target_actors=self.target_actors,
            target_critics=self.target_critics, actor_optimizer=self.actor_optimizer,
            critic_optimizer=self.critic_optimizer, updates=self.updates,
        )
        self._train = tf.function(self._train_many, jit_compile=True)

    def actor_weights(self) -> List[np.ndarray]:
        """Actor weights as ``[w0, b0, w1, b1, ...]`` (the order :class:`FrozenActors` takes)."""
        return [variable.numpy() for pair in zip(self.actors.weights, self.actors.biases) for variable in pair]

    # -- learning
    def _critic_values(self, critics, states, joint_actions):
        import tensorflow as tf

        batch = tf.shape(states)[0]
        inputs = tf.concat([states, tf.reshape(joint_actions, [batch, -1])], axis=-1)  # (B, S + N*A)
        return critics(tf.tile(inputs[:, None], [1, 2, 1]))[..., 0]  # (B, 2)

    def _train_many(self, batches: Dict[str, Any], smoothing_noise):
        """One critic update per batch in ``batches`` (leading axis K) and an actor update
        every ``policy_delay`` critic updates. Returns the mean losses."""
        import tensorflow as tf

        config = self.config
        num_batches = tf.shape(batches["rewards"])[0]
        critic_loss_sum = tf.constant(0.0)
        actor_loss_sum = tf.constant(0.0)
        actor_updates = tf.constant(0.0)
        for k in tf.range(num_batches):
            observations = batches["observations"][k]  # (B, N, O)
            states = batches["states"][k]  # (B, S)
            actions = batches["actions"][k]  # (B, N, A)
            rewards = batches["rewards"][k]  # (B,)
            terminals = batches["terminals"][k]  # (B,)
            next_observations = batches["next_observations"][k]
            next_states = batches["next_states"][k]
            noise = tf.clip_by_value(smoothing_noise[k], -config.target_noise_clip, config.target_noise_clip)
            next_actions = tf.clip_by_value(tf.tanh(self.target_actors(next_observations)) + noise, -1.0, 1.0)
            next_values = tf.reduce_min(self._critic_values(self.target_critics, next_states, next_actions), axis=-1)
            targets = tf.stop_gradient(rewards + config.discount * (1.0 - terminals) * next_values)  # (B,)
            with tf.GradientTape() as tape:
                values = self._critic_values(self.critics, states, actions)  # (B, 2)
                critic_loss = tf.reduce_mean(tf.reduce_sum(tf.square(values - targets[:, None]), axis=-1))
            gradients = tape.gradient(critic_loss, self.critics.trainable_variables)
            self.critic_optimizer.apply(gradients, self.critics.trainable_variables)
            critic_loss_sum += critic_loss
            self.updates.assign_add(1)
            if self.updates % config.policy_delay == 0:
                with tf.GradientTape() as tape:
                    policy_actions = tf.tanh(self.actors(observations))  # (B, N, A)
                    actor_loss = -tf.reduce_mean(self._critic_values(self.critics, states, policy_actions)[:, 0])
                gradients = tape.gradient(actor_loss, self.actors.trainable_variables)
                self.actor_optimizer.apply(gradients, self.actors.trainable_variables)
                for target, online in ((self.target_actors, self.actors), (self.target_critics, self.critics)):
                    for target_variable, variable in zip(target.trainable_variables, online.trainable_variables):
                        target_variable.assign(
                            (1.0 - config.target_update_rate) * target_variable + config.target_update_rate * variable
                        )
                actor_loss_sum += actor_loss
                actor_updates += 1.0
        count = tf.cast(num_batches, tf.float32)
        return {"critic_loss": critic_loss_sum / count, "actor_loss": actor_loss_sum / tf.maximum(actor_updates, 1.0)}

    def train(self, batches: Dict[str, np.ndarray], smoothing_noise: np.ndarray) -> Dict[str, float]:
        logs = self._train(batches, smoothing_noise)
        return {key: float(value) for key, value in logs.items()}


# ------------------------------------------------------------------------------ actors as data
class FrozenActors:
    """A deterministic joint policy from saved actor weights, evaluated in numpy."""

    def __init__(self, weights: Sequence[np.ndarray]):
        self.weights = [np.asarray(weight, "float32") for weight in weights[0::2]]
        self.biases = [np.asarray(bias, "float32") for bias in weights[1::2]]

    @classmethod
    def load(cls, path: str) -> "FrozenActors":
        with np.load(path) as stored:
            return cls([stored[f"arr_{i}"] for i in range(len(stored.files))])

    @classmethod
    def random(cls, observation_size: int, num_actions: int, num_agents: int, hidden_sizes: Sequence[int],
               rng: np.random.Generator) -> "FrozenActors":
        """A randomly initialised policy (the same initialisation as the trained actors)."""
        weights = []
        sizes = actor_sizes(observation_size, num_actions, hidden_sizes)
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / np.sqrt(fan_in)
            weights.append(rng.uniform(-bound, bound, (num_agents, fan_in, fan_out)))
            weights.append(rng.uniform(-bound, bound, (num_agents, fan_out)))
        return cls(weights)

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        """Joint actions ``(B, N, A)`` in [-1, 1] for observations ``(B, N, O)``."""
        hidden = np.asarray(observations, "float32")
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            hidden = np.einsum("bki,kio->bko", hidden, weight) + bias
            if layer < len(self.weights) - 1:
                hidden = np.maximum(hidden, 0.0)
        return np.tanh(hidden)


def save_actor_weights(path: str, weights: Sequence[np.ndarray]) -> None:
    temporary = f"{path}.tmp.npz"
    np.savez(temporary, *weights)
    os.replace(temporary, path)


# ------------------------------------------------------------------------------ rollouts
def run_episodes(
    make_env: Callable[[int], Any],
    policy: Callable[[np.ndarray], np.ndarray],
    num_episodes: int,
    seed: int,
    noise: float = 0.0,
    rng: Optional[np.random.Generator] = None,
    num_envs: int = 10,
    record: bool = False,
    progress: Optional[Callable[[int], None]] = None,
) -> Tuple[np.ndarray, Optional[Dict[str, Any]]]:
    """Play ``num_episodes`` whole episodes with ``policy`` (+ Gaussian ``noise``, clipped).

    Episodes run ``num_envs`` at a time in lockstep so that the policy sees a batch; episode
    ``e`` is played in an environment made by ``make_env(seed + e)`` (reset 0 of that env),
    so the result depends only on the arguments. Returns the team return of each episode and,
    with ``record``, the experience of all episodes in order as OG-MARL arrays with a leading
    time axis (observations, actions, rewards, terminals, truncations, infos.state).
    """
    rng = rng if rng is not None else np.random.default_rng(seed)
    returns = np.zeros(num_episodes)
    recorded: List[Dict[str, np.ndarray]] = [None] * num_episodes  # type: ignore[list-item]
    for start in range(0, num_episodes, num_envs):
        episode_ids = list(range(start, min(start + num_envs, num_episodes)))
        envs = [make_env(seed + e) for e in episode_ids]
        agents = envs[0].agents
        first = [env.reset() for env in envs]
        observations = [np.stack([obs[agent] for agent in agents]) for obs, _ in first]
        states = [info["state"] for _, info in first]
        active = list(range(len(envs)))
        lengths = [0] * len(envs)
        buffers = [{key: [] for key in ("observations", "actions", "rewards", "terminals", "truncations", "state")} for _ in envs]
        while active:
            actions = policy(np.stack([observations[i] for i in active]))  # (B, N, A)
            if noise > 0:
                actions = actions + noise * rng.standard_normal(actions.shape)
            actions = np.clip(actions, -1.0, 1.0).astype("float32")
            still_active = []
            for row, i in enumerate(active):
                next_obs, rewards, terminals, truncations, info = envs[i].step(
                    {agent: actions[row, n] for n, agent in enumerate(agents)}
                )
                reward = np.array([rewards[agent] for agent in agents], "float32")
                terminal = np.array([terminals[agent] for agent in agents], "float32")
                truncation = np.array([truncations[agent] for agent in agents], "float32")
                returns[episode_ids[i]] += float(reward.mean())
                lengths[i] += 1
                if record:
                    buffer = buffers[i]
                    buffer["observations"].append(observations[i])
                    buffer["actions"].append(actions[row])
                    buffer["rewards"].append(reward)
                    buffer["terminals"].append(terminal)
                    buffer["truncations"].append(truncation)
                    buffer["state"].append(states[i])
                observations[i] = np.stack([next_obs[agent] for agent in agents])
                states[i] = info["state"]
                if terminal.any() or truncation.any():
                    if record:
                        recorded[episode_ids[i]] = {key: np.stack(value) for key, value in buffers[i].items()}
                    if progress is not None:
                        progress(lengths[i])
                else:
                    still_active.append(i)
            active = still_active
        for env in envs:
            env.close()
    if not record:
        return returns, None
    experience = {key: np.concatenate([episode[key] for episode in recorded]).astype("float32")
                  for key in ("observations", "actions", "rewards", "terminals", "truncations")}
    experience["infos"] = {"state": np.concatenate([episode["state"] for episode in recorded]).astype("float32")}
    return returns, experience


# ------------------------------------------------------------------------------ training
class ReplayBuffer:
    """All transitions of the run in order (capacity = total steps): nothing is evicted,
    so the buffer up to any step is that step's Medium-Replay."""

    FIELDS = ("observations", "actions", "rewards", "terminals", "truncations", "states",
              "next_observations", "next_states")

    def __init__(self, capacity: int, num_agents: int, observation_size: int, state_size: int, num_actions: int):
        n, o, s, a = num_agents, observation_size, state_size, num_actions
        shapes = {"observations": (n, o), "actions": (n, a), "rewards": (n,), "terminals": (n,),
                  "truncations": (n,), "states": (s,), "next_observations": (n, o), "next_states": (s,)}
        self.data = {key: np.zeros((capacity, *shape), "float32") for key, shape in shapes.items()}
        self.size = 0

    def add(self, **row: np.ndarray) -> None:
        for key in self.FIELDS:
            self.data[key][self.size] = row[key]
        self.size += 1

    def sample(self, rng: np.random.Generator, num_batches: int, batch_size: int) -> Dict[str, np.ndarray]:
        index = rng.integers(0, self.size, (num_batches, batch_size))
        batch = {key: self.data[key][index] for key in ("observations", "actions", "states", "next_observations", "next_states")}
        batch["rewards"] = self.data["rewards"][index].mean(axis=-1)  # team reward (K, B)
        batch["terminals"] = self.data["terminals"][index].max(axis=-1)
        return batch

    def save_rows(self, path: str, start: int, end: int) -> None:
        temporary = f"{path}.tmp.npz"
        np.savez(temporary, **{key: value[start:end] for key, value in self.data.items()})
        os.replace(temporary, path)

    def load_rows(self, path: str, start: int) -> int:
        with np.load(path) as stored:
            count = stored["actions"].shape[0]
            for key in self.FIELDS:
                self.data[key][start:start + count] = stored[key]
        self.size = max(self.size, start + count)
        return count


def _format_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class BehaviourTraining:
    """A resumable MATD3 run in ``work_dir`` (see the module docstring for the layout)."""

    def __init__(self, work_dir: str, make_env: Callable[[int], Any], config: MATD3Config, seed: int,
                 run_identity: Optional[Dict[str, Any]] = None, log: Callable[[str], None] = print):
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
            if not file_name.startswith("rows-") or file_name.endswith(".tmp.npz"):
                continue
            start, stop = (int(part) for part in file_name[len("rows-"):-len(".npz")].split("-"))
            if start >= end:
                continue
            with np.load(self._path("replay", file_name)) as stored:
                parts.append((start, {key: stored[key][: end - start] for key in
                                      ("observations", "actions", "rewards", "terminals", "truncations", "states")}))
        parts.sort(key=lambda part: part[0])
        covered = sum(part["actions"].shape[0] for _, part in parts)
        if covered != end:
            raise RuntimeError(f"The saved replay rows in {self._path('replay')} cover {covered} of the first {end} steps.")
        experience = {key: np.concatenate([part[key] for _, part in parts])
                      for key in ("observations", "actions", "rewards", "terminals", "truncations")}
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
                    f"{self.work_dir} holds a behaviour run with another config ({stored}); "
                    f"delete the directory to start over with {self.identity}."
                )
        else:
            with open(f"{path}.tmp", "w") as handle:
                json.dump(self.identity, handle, indent=1)
            os.replace(f"{path}.tmp", path)

    def _save_checkpoint(self, learner: MATD3, replay: ReplayBuffer, state: Dict[str, Any]) -> None:
        step = state["step"]
        rows_saved = state["rows_saved"]
        if step > rows_saved:
            replay.save_rows(self._path("replay", f"rows-{rows_saved:09d}-{step:09d}.npz"), rows_saved, step)
            state["rows_saved"] = step
        name = f"ckpt-{step:09d}"
        temporary = self._path(f".tmp-{name}")
        shutil.rmtree(temporary, ignore_errors=True)
        os.makedirs(temporary)
        learner.checkpoint.write(os.path.join(temporary, "networks"))
        with open(os.path.join(temporary, "state.json"), "w") as handle:
            json.dump(state, handle)
        final = self._path(name)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(temporary, final)
        with open(self._path(f"{LATEST}.tmp"), "w") as handle:
            handle.write(name)
        os.replace(self._path(f"{LATEST}.tmp"), self._path(LATEST))
        for old in os.listdir(self.work_dir):
            if old.startswith("ckpt-") and old != name:
                shutil.rmtree(self._path(old), ignore_errors=True)

    def _restore(self, learner: MATD3, replay: ReplayBuffer) -> Optional[Dict[str, Any]]:
        """Load the latest checkpoint and the replay rows it covers; delete replay files a
        killed run wrote after it (the resumed run writes them again, identically)."""
        state = None
        if os.path.isfile(self._path(LATEST)):
            with open(self._path(LATEST)) as handle:
                name = handle.read().strip()
            learner.checkpoint.read(self._path(name, "networks")).assert_existing_objects_matched()
            with open(self._path(name, "state.json")) as handle:
                state = json.load(handle)
        rows_saved = 0 if state is None else state["rows_saved"]
        for file_name in sorted(os.listdir(self._path("replay"))):
            path = self._path("replay", file_name)
            if not file_name.startswith("rows-") or file_name.endswith(".tmp.npz"):
                os.remove(path)
                continue
            start, end = (int(part) for part in file_name[len("rows-"):-len(".npz")].split("-"))
            if end <= rows_saved:
                replay.load_rows(path, start)
            else:
                os.remove(path)
        if state is None:
            return None
        replay.size = state["step"]
        return state

    # -- the run
    def run(self) -> Dict[str, Any]:
        """Train to the budget (or the target return), resuming from the latest checkpoint.

        Returns:
            ``{"final_step", "final_return", "evaluations"}`` (also stored in ``COMPLETE``).
        """
        self._check_identity()  # also before reusing a finished run: it must be this config's
        if self.is_complete():
            return self.final_result()
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
            state = {"step": 0, "episodes": 0, "rows_saved": 0, "evaluations": [], "episode_returns": [],
                     "stopped_early": False}
        else:
            rng.bit_generator.state = state["rng"]
            self.log(f"[matd3] resumed at step {state['step']} ({state['episodes']} episodes) from {self.work_dir}")
        training_env = self.make_env(self.seed)
        training_env._resets = state["episodes"]  # reset k uses seed + k: continue the sequence
        next_evaluation = (state["step"] // config.evaluate_every + 1) * config.evaluate_every
        next_checkpoint = (state["step"] // config.checkpoint_every + 1) * config.checkpoint_every
        started, started_step = time.time(), state["step"]
        pending_updates = int(state.get("pending_updates", 0))  # env steps not yet trained on
        logs: Dict[str, float] = {}
        policy = FrozenActors(learner.actor_weights())  # refreshed after every training call
        if state["step"] == 0:
            self._evaluate(learner, state)
        from og_marl_omsd import progress

        bar = progress.Progress("matd3", config.total_steps, start=state["step"])  # ETA: the whole budget
        while state["step"] < config.total_steps and not state["stopped_early"]:
            observations_dict, info = training_env.reset()
            observations = np.stack([observations_dict[agent] for agent in agents])
            global_state = info["state"]
            episode_return = 0.0
            while True:
                if state["step"] < config.warmup_steps:
                    actions = rng.uniform(-1.0, 1.0, (num_agents, num_actions))
                else:
                    actions = policy(observations[None])[0]
                    actions = actions + config.exploration_noise * rng.standard_normal(actions.shape)
                actions = np.clip(actions, -1.0, 1.0).astype("float32")
                next_dict, rewards, terminals, truncations, info = training_env.step(
                    {agent: actions[n] for n, agent in enumerate(agents)}
                )
                next_observations = np.stack([next_dict[agent] for agent in agents])
                reward = np.array([rewards[agent] for agent in agents], "float32")
                terminal = np.array([terminals[agent] for agent in agents], "float32")
                truncation = np.array([truncations[agent] for agent in agents], "float32")
                replay.add(observations=observations, actions=actions, rewards=reward, terminals=terminal,
                           truncations=truncation, states=global_state, next_observations=next_observations,
                           next_states=info["state"])
                state["step"] += 1
                episode_return += float(reward.mean())
                observations, global_state = next_observations, info["state"]
                if state["step"] >= config.warmup_steps:
                    pending_updates += 1
                    if pending_updates >= config.train_every:
                        num_updates = int(round(pending_updates * config.updates_per_step))
                        batches = replay.sample(rng, num_updates, config.batch_size)
                        smoothing = config.target_noise * rng.standard_normal(batches["actions"].shape)
                        logs = learner.train(batches, smoothing.astype("float32"))
                        policy = FrozenActors(learner.actor_weights())
                        pending_updates = 0
                if terminal.any() or truncation.any() or state["step"] >= config.total_steps:
                    break
            state["episodes"] += 1
            state["episode_returns"].append([state["step"], episode_return])
            bar.update(state["step"], {"train_return": episode_return,
                                       "evaluation_return": state["evaluations"][-1][1]})
            if state["step"] >= next_evaluation or state["step"] >= config.total_steps:
                next_evaluation = (state["step"] // config.evaluate_every + 1) * config.evaluate_every
                value = self._evaluate(learner, state)
                elapsed = time.time() - started
                rate = (state["step"] - started_step) / max(elapsed, 1e-9)
                remaining = (config.total_steps - state["step"]) / max(rate, 1e-9)
                self.log(
                    f"[matd3] step {state['step']}/{config.total_steps} ({100 * state['step'] / config.total_steps:.1f}%) "
                    f"{rate:.0f} steps/s | train return {episode_return:.1f} | evaluation return {value:.1f} | "
                    f"critic loss {logs.get('critic_loss', float('nan')):.3f} | ETA {_format_seconds(remaining)}"
                    + ("" if config.target_return is None else f" (whole budget; stops at return {config.target_return})")
                )
                if config.target_return is not None and value >= config.target_return:
                    state["stopped_early"] = True
                    self.log(f"[matd3] evaluation return {value:.1f} reached the target {config.target_return}; stopping")
            if state["step"] >= next_checkpoint or state["step"] >= config.total_steps or state["stopped_early"]:
                next_checkpoint = (state["step"] // config.checkpoint_every + 1) * config.checkpoint_every
                state["rng"] = rng.bit_generator.state
                state["pending_updates"] = pending_updates
                self._save_checkpoint(learner, replay, state)
        bar.close()
        training_env.close()
        save_actor_weights(self.policy_path(None), learner.actor_weights())
        final_return = state["evaluations"][-1][1]
        result = {"final_step": state["step"], "final_return": final_return, "evaluations": state["evaluations"]}
        with open(self._path("COMPLETE.tmp"), "w") as handle:
            json.dump(result, handle, indent=1)
        os.replace(self._path("COMPLETE.tmp"), self._path("COMPLETE"))
        return result

    def _evaluate(self, learner: MATD3, state: Dict[str, Any]) -> float:
        """Mean return of the deterministic actors over ``evaluation_episodes`` fixed-seed episodes;
        the actors are saved as ``policies/step-<step>.npz``."""
        weights = learner.actor_weights()
        save_actor_weights(self.policy_path(state["step"]), weights)
        returns, _ = run_episodes(self.make_env, FrozenActors(weights), self.config.evaluation_episodes,
                                  seed=self.seed + 1_000_000, num_envs=self.config.evaluation_episodes)
        value = float(returns.mean())
        state["evaluations"].append([state["step"], value])
        path = self._path("evaluations.json")
        with open(f"{path}.tmp", "w") as handle:
            json.dump(state["evaluations"], handle)
        os.replace(f"{path}.tmp", path)
        return value


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
