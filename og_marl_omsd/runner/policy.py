"""Trained actors as an artefact: a TF SavedModel that any TF program can load.

Every finished run saves its actors to ``<run_dir>/policy/``::

    policy = tf.saved_model.load("runs/.../policy")
    actions = policy(observations)                         # (B, N, O) float32 -> (B, N, A) in [-1, 1]
    actions = policy.signatures["serving_default"](observations=obs)["actions"]

``observations`` stacks the agents' observations in the order of ``policy/policy.json``'s
``agents`` (OG-MARL's order; MaMuJoCo observations zero-padded to the largest agent's, as
the environment wrapper gives them). ``policy.json`` also records the shapes, the system,
the task and the run's provenance. :func:`load_policy` wraps the SavedModel as an
OG-MARL-style ``select_actions`` over agent dicts. It acts as the run's evaluations did: through
:class:`NumpyActors` on the SavedModel's weights (runs whose ``policy.json`` says
``"acting": "numpy"``), bit for bit the code and numbers of the run; older exports run the
actors eagerly, rebuilt from the SavedModel's variables, as their runs did. The SavedModel's
graph agrees with both to float32 rounding (about 1e-7, from fused kernels), which over a
1000-step MuJoCo episode can still move a return, so reproducing a run's numbers uses the former.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

POLICY_DIR = "policy"
POLICY_INFO = "policy.json"


class NumpyActors:
    """The deterministic actors' forward pass in numpy: how trained actors act, step by step.

    At batch 1 a compiled TF call costs 130-250 microseconds on this project's CPU whatever the
    network (TF's dispatch), against 4-9 of compute for these actors; numpy runs the same maths
    in tens of microseconds (README, Throughput). A run's evaluations act through it, and so does
    :class:`LoadedPolicy` for runs exported with ``"acting": "numpy"``, with the very same weights
    and code, so ``og_marl_omsd.runner.evaluate`` reproduces a run's returns. It agrees with the TF
    actors to float32 rounding (tests/test_policy.py, the SavedModel test).

    Args:
        layers: ``(w, b)`` per layer: ``(N, in, out)``/``(N, out)`` for per-agent actors,
            ``(in, out)``/``(out,)`` for one MLP; ReLU between layers, tanh after the last.
        kind: ``per_agent`` (agent ``i``'s MLP on ``o_i``), ``shared`` (one MLP on ``o_i`` and
            the agent one-hot) or ``centralised`` (one MLP on all observations, joint action).
        num_agents, action_dim: the output's ``N`` and ``A``.
    """

    KINDS = ("per_agent", "shared", "centralised")

    def __init__(self, layers: Sequence[Any], kind: str, num_agents: int, action_dim: int):
        if kind not in self.KINDS:
            raise ValueError(f"Unknown actor kind {kind!r}; choose one of {', '.join(self.KINDS)}.")
        self.layers = [(np.asarray(w, np.float32), np.asarray(b, np.float32)) for w, b in layers]
        self.kind = kind
        self.num_agents = int(num_agents)
        self.action_dim = int(action_dim)

    @classmethod
    def of(cls, actors: Any, kind: Optional[str] = None, num_agents: Optional[int] = None, action_dim: int = 0):
        """From a :class:`~og_marl_omsd.models.networks.DeterministicActors` (live, or restored from a
        SavedModel: the same attribute tree; give ``kind``, ``num_agents`` and ``action_dim`` then)."""
        stacked = getattr(actors, "_stacked", None)
        if stacked is not None:
            layers, kind = stacked._layers, "per_agent"
        else:
            layers = actors._mlps[0]._layers
            if kind is None:
                kind = "centralised" if actors.centralised else "shared" if actors.shared else "per_agent"
        weights = [(layer.w.numpy(), layer.b.numpy()) for layer in layers]
        num_agents = int(getattr(actors, "num_agents", num_agents or 0))
        action_dim = int(getattr(actors, "action_dim", action_dim))
        return cls(weights, kind, num_agents, action_dim)

    def _mlp(self, h: np.ndarray) -> np.ndarray:
        last = len(self.layers) - 1
        for k, (w, b) in enumerate(self.layers):
            h = np.matmul(h, w) + (b[:, None, :] if w.ndim == 3 else b)
            if k < last:
                h = np.maximum(h, 0.0)
        return np.tanh(h)

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        """``(B, N, O)`` -> actions ``(B, N, A)`` in [-1, 1], float32."""
        x = np.asarray(observations, np.float32)
        batch, n = x.shape[0], self.num_agents
        if self.kind == "per_agent":
            return self._mlp(x.transpose(1, 0, 2)).transpose(1, 0, 2)
        if self.kind == "shared":
            ids = np.broadcast_to(np.eye(n, dtype=np.float32), (batch, n, n))
            flat = np.concatenate([x, ids], axis=-1).reshape(batch * n, -1)
            return self._mlp(flat).reshape(batch, n, self.action_dim)
        return self._mlp(x.reshape(batch, -1)).reshape(batch, n, self.action_dim)


class _ExportedActors(tf.Module):
    def __init__(self, actors: tf.Module, num_agents: int, observation_dim: int):
        super().__init__(name="exported_actors")
        self.actors = actors
        spec = tf.TensorSpec([None, num_agents, observation_dim], tf.float32, name="observations")
        self.__call__ = tf.function(self._act, input_signature=[spec])

    def _act(self, observations: tf.Tensor) -> tf.Tensor:
        return self.actors(observations)


def export_actors(
    actors: tf.Module,
    path: str,
    agents: Sequence[str],
    observation_dim: int,
    action_dim: int,
    info: Optional[Dict[str, Any]] = None,
) -> str:
    """Save ``actors`` (``(B, N, O) -> (B, N, A)``) as a SavedModel at ``path``, atomically
    (written beside it and renamed; an existing export is replaced).

    Returns:
        ``path``.
    """
    from og_marl_omsd.support.files import discard, partial_dir, publish_dir, write_json

    module = _ExportedActors(actors, len(agents), int(observation_dim))
    partial = partial_dir(path)
    try:
        signature = module.__call__.get_concrete_function()

        @tf.function(input_signature=signature.structured_input_signature[0])
        def serving(observations):
            return {"actions": module.__call__(observations)}

        tf.saved_model.save(module, partial, signatures={"serving_default": serving})
        record = {
            "agents": list(agents),
            "observation_shape": [int(observation_dim)],
            "action_dim": int(action_dim),
            "input": "observations (B, N, O) float32, agents in this order",
            "output": "actions (B, N, A) float32 in [-1, 1]",
            **(info or {}),
        }
        write_json(os.path.join(partial, POLICY_INFO), record)
        publish_dir(partial, path)
    except BaseException:
        discard(partial)
        raise
    return path


def actor_architecture(actors: Any) -> Optional[Dict[str, Any]]:
    """The arguments that rebuild a :class:`~og_marl_omsd.models.networks.DeterministicActors`."""
    mlps = getattr(actors, "_mlps", None)
    layers = getattr(mlps[0], "_layers", None) if mlps else None  # sonnet's MLP keeps its Linear layers here
    if not layers:
        return None
    return {
        "num_agents": int(actors.num_agents),
        "action_dim": int(actors.action_dim),
        "hidden_sizes": [int(layer.output_size) for layer in layers[:-1]],
        "shared": bool(actors.shared),
        "centralised": bool(actors.centralised),
    }


def export_system(system: Any, run_dir: str, info: Optional[Dict[str, Any]] = None) -> str:
    """Export a trained score-regularised system's actors to ``<run_dir>/policy``."""
    info = {
        **(info or {}),
        "actor": actor_architecture(system.actors),
        "jit_compile": bool(getattr(system, "_jit_compile", False)),
        "acting": "numpy",  # the run's evaluations acted through NumpyActors (LoadedPolicy does the same)
    }
    return export_actors(
        system.actors,
        os.path.join(run_dir, POLICY_DIR),
        list(system.agents),
        system.observation_dim,
        system.action_dim,
        info,
    )


class LoadedPolicy:
    """A SavedModel from :func:`export_actors` with OG-MARL's ``select_actions`` interface."""

    def __init__(self, path: str):
        info_path = os.path.join(path, POLICY_INFO)
        if not os.path.isfile(info_path):
            raise FileNotFoundError(f"{path} holds no exported policy ({POLICY_INFO} is missing).")
        with open(info_path) as handle:
            self.info = json.load(handle)
        self.agents = list(self.info["agents"])
        self.module = tf.saved_model.load(path)
        self.actors = None
        if self.info.get("actor"):  # eager actors with the SavedModel's variables (see the module docstring)
            from og_marl_omsd.models.networks import DeterministicActors

            actors = DeterministicActors(**self.info["actor"])
            actors(tf.zeros([1, len(self.agents), *self.info["observation_shape"]]))
            tf.train.Checkpoint(actors=actors).read(
                os.path.join(path, "variables", "variables")
            ).assert_existing_objects_matched().expect_partial()
            self.actors = actors
        # Act as the run did: through NumpyActors (runs exported with "acting": "numpy"), else
        # (older runs) the actors XLA-compiled when it trained with jit_compile.
        act = self.actors or self.module
        self._act = tf.function(act, jit_compile=True) if self.info.get("jit_compile") else act
        self.numpy_actors: Optional[NumpyActors] = None
        if self.info.get("acting") == "numpy":  # shared/centralised actors were rebuilt above: their kind is known
            self.numpy_actors = NumpyActors.of(
                self.actors or self.module.actors, num_agents=len(self.agents), action_dim=int(self.info["action_dim"])
            )

    def actions(self, observations: np.ndarray) -> np.ndarray:
        """``(B, N, O)`` -> ``(B, N, A)``."""
        if self.numpy_actors is not None:
            return self.numpy_actors(observations)
        observations = tf.convert_to_tensor(np.asarray(observations, "float32"))
        return self._act(observations).numpy()

    def select_actions(self, observations: Dict[str, np.ndarray], legal_actions: Any = None) -> Dict[str, np.ndarray]:
        stacked = np.stack([np.asarray(observations[agent], "float32").reshape(-1) for agent in self.agents])
        actions = self.actions(stacked[None])[0]
        return {agent: actions[i] for i, agent in enumerate(self.agents)}


def load_policy(run_dir_or_path: str) -> LoadedPolicy:
    """The exported policy of a run directory (or of a ``policy/`` directory itself)."""
    path = run_dir_or_path
    if not os.path.isfile(os.path.join(path, POLICY_INFO)):
        path = os.path.join(run_dir_or_path, POLICY_DIR)
    return LoadedPolicy(path)


def final_evaluation_record(environment: Any, num_episodes: int, seed: int) -> Dict[str, Any]:
    """What evaluate needs to replay a run's final evaluation: its size, seed and, for
    environments that seed reset ``k`` with ``seed + k`` (MaMuJoCo), the first reset it used
    (earlier evaluations in the same process had consumed the resets before it)."""
    resets = getattr(environment, "_resets", None)
    first = None if resets is None else int(resets) - int(num_episodes)
    return {"episodes": int(num_episodes), "seed": int(seed), "first_episode": first}
