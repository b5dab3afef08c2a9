"""Trained actors as an artefact: a TF SavedModel that any TF program can load.

Every finished run saves its actors to ``<run_dir>/policy/``::

    policy = tf.saved_model.load("runs/.../policy")
    actions = policy(observations)                         # (B, N, O) float32 -> (B, N, A) in [-1, 1]
    actions = policy.signatures["serving_default"](observations=obs)["actions"]

``observations`` stacks the agents' observations in the order of ``policy/policy.json``'s
``agents`` (OG-MARL's order; MaMuJoCo observations zero-padded to the largest agent's, as
the environment wrapper gives them). ``policy.json`` also records the shapes, the system,
the task and the run's provenance. :func:`load_policy` wraps the SavedModel as an
OG-MARL-style ``select_actions`` over agent dicts. It runs the actors eagerly, rebuilt from the
SavedModel's variables, which is bit for bit the code the run evaluated with; the
SavedModel's graph agrees to float32 rounding (about 1e-7, from fused kernels), which over a
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
    from og_marl_omsd.files import discard, partial_dir, publish_dir, write_json

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
    """The arguments that rebuild a :class:`~og_marl_omsd.networks.DeterministicActors`."""
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
            from og_marl_omsd.networks import DeterministicActors

            actors = DeterministicActors(**self.info["actor"])
            actors(tf.zeros([1, len(self.agents), *self.info["observation_shape"]]))
            tf.train.Checkpoint(actors=actors).read(
                os.path.join(path, "variables", "variables")
            ).assert_existing_objects_matched().expect_partial()
            self.actors = actors
        # Act as the run did: its evaluation called the actors XLA-compiled when it trained with jit_compile.
        act = self.actors or self.module
        self._act = tf.function(act, jit_compile=True) if self.info.get("jit_compile") else act

    def actions(self, observations: np.ndarray) -> np.ndarray:
        """``(B, N, O)`` -> ``(B, N, A)``."""
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
