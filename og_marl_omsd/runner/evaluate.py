"""Evaluate a finished run's actors again, without training.

    python -m og_marl_omsd.evaluate <run_dir> [num_eval_episodes=N] [seed=S] [first_episode=K] [video=true]

Loads ``<run_dir>/policy`` (the SavedModel every finished run exports, see
:mod:`og_marl_omsd.runner.policy`), builds the run's environment with seed ``S`` and plays ``N``
episodes with OG-MARL's evaluation loop. The defaults are the run's own final evaluation
(its seed, its ``10 x num_eval_episodes`` episodes and, for MaMuJoCo, whose reset ``k``
uses seed ``S + k``, the same first episode), so ``python -m og_marl_omsd.evaluate
<run_dir>`` reproduces the final return in ``results.json``. ``video=true`` records every
episode of a MaMuJoCo task with gymnasium's ``RecordVideo`` to ``<run_dir>/videos/``
(needs ``moviepy``: ``pip install "og-marl-omsd[video]"``, and a MuJoCo GL backend such
as ``MUJOCO_GL=egl`` on a machine without a display).

The result is printed and written to ``<run_dir>/evaluations/seed<S>-episodes<N>-first<K>.json``.
Bad input (not a finished run, unknown option) is one paragraph on stderr and exit code 2.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, List, Optional

import numpy as np

from og_marl_omsd.runner.devices import setup_devices
from og_marl_omsd.support import quiet
from og_marl_omsd.support.errors import UserError, cli_entry
from og_marl_omsd.support.files import write_json
from og_marl_omsd.support.provenance import collect

OPTIONS = {"num_eval_episodes": int, "seed": int, "first_episode": int, "video": bool, "verbose": bool}
INTERRUPTED = "Interrupted. Run the same command again."
USAGE = (
    "python -m og_marl_omsd.evaluate <run_dir> [num_eval_episodes=N] [seed=S] [first_episode=K] [video=true] "
    "[verbose=true]"
)


def parse_arguments(argv: List[str]) -> Dict[str, Any]:
    """``<run_dir> key=value ...`` -> ``{"run_dir": ..., key: value}``."""
    if not argv or "=" in argv[0]:
        raise UserError(f"Give the run directory first: {USAGE}.")
    options: Dict[str, Any] = {"run_dir": argv[0]}
    for argument in argv[1:]:
        key, separator, text = argument.partition("=")
        if not separator or key not in OPTIONS:
            raise UserError(f"Unknown argument {argument!r}. Usage: {USAGE}.")
        kind = OPTIONS[key]
        if kind is bool:
            if text.lower() not in ("true", "false"):
                raise UserError(f"{key} must be true or false, got {text!r}.")
            options[key] = text.lower() == "true"
            continue
        try:
            options[key] = int(text)
        except ValueError:
            raise UserError(f"{key} must be an integer, got {text!r}.") from None
    if options.get("num_eval_episodes", 1) <= 0:
        raise UserError(f"num_eval_episodes must be > 0, got {options['num_eval_episodes']}.")
    if options.get("first_episode", 0) < 0:
        raise UserError(f"first_episode must be >= 0, got {options['first_episode']}.")
    if not 0 <= options.get("seed", 0) <= 2**31 - 1:  # what TF, NumPy and the environments accept
        raise UserError(f"seed must be a whole number in [0, {2**31 - 1}], got {options['seed']}.")
    return options


def load_finished_run(run_dir: str) -> Dict[str, Any]:
    """The run's resolved config and results; a UserError unless it is a finished run with an exported policy."""
    from omegaconf import OmegaConf

    from og_marl_omsd.runner.policy import POLICY_DIR, POLICY_INFO

    results_path = os.path.join(run_dir, "results.json")
    config_path = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(results_path) or not os.path.isfile(config_path):
        raise UserError(
            f"{run_dir} is not a finished run (it needs config.yaml and results.json, which a run writes when it "
            "ends). Give the directory a run printed as 'run dir ...', e.g. runs/omsd/bandit-bandit/GMM/seed0-<hash>, "
            "or finish the run first by starting its command again (it resumes)."
        )
    if not os.path.isfile(os.path.join(run_dir, POLICY_DIR, POLICY_INFO)):
        raise UserError(
            f"{run_dir} has no exported policy ({POLICY_DIR}/{POLICY_INFO}); runs finished before policies were "
            "exported have none. Run it again in a new run_dir=<path> to get one."
        )
    try:
        with open(results_path) as handle:
            results = json.load(handle)
    except (OSError, ValueError) as error:
        raise UserError(
            f"{results_path} cannot be read ({getattr(error, 'strerror', None) or error}). Fix its permissions or "
            "restore it from a good copy."
        ) from None
    try:
        config = OmegaConf.to_container(OmegaConf.load(config_path), resolve=True)
    except Exception as error:  # YAML and OmegaConf raise many kinds
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserError(
            f"{config_path} cannot be read ({reason}). Fix its permissions or restore it from a good copy."
        ) from None
    if not isinstance(results, dict) or not isinstance(config, dict) or "task" not in config:
        raise UserError(f"{run_dir} does not hold a run's results.json and config.yaml; give a run directory.")
    return {"config": config, "results": results}


def load_checked_policy(run_dir: str) -> Any:
    """The run's exported policy; one paragraph when the SavedModel cannot be loaded."""
    from og_marl_omsd.runner.policy import POLICY_DIR, load_policy

    try:
        return load_policy(run_dir)
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as error:  # TensorFlow raises many kinds for a damaged SavedModel
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300].rstrip(".")
        raise UserError(
            f"The exported policy {os.path.join(run_dir, POLICY_DIR)} cannot be loaded: {reason}. It is damaged or "
            "incomplete (nothing was evaluated or written). Restore it from a good copy, or run the run's command "
            "again with another run_dir=<path> to train and export it anew."
        ) from None


def record_videos(scenario: str, seed: int, first_episode: int, episode_actions: List[np.ndarray], folder: str) -> None:
    """Replay the evaluated episodes in a child process that renders them with gymnasium's
    ``RecordVideo`` (one file per episode in ``folder``).

    MuJoCo is deterministic, so the same reset seed and the same actions give the same
    trajectory. The child never imports TensorFlow: software EGL and TensorFlow crash
    together in one process (measured here: a segfault at the first TF op after an EGL frame).

    Raises:
        UserError: moviepy is missing, or rendering failed or crashed (with what to set).
    """
    import subprocess
    import tempfile

    try:
        import moviepy  # noqa: F401  (RecordVideo writes with it)
    except ImportError:
        raise UserError(
            "video=true needs moviepy, which gymnasium's RecordVideo writes videos with: "
            'pip install "og-marl-omsd[video]" (or pip install moviepy), then run again.'
        ) from None
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        actions_path = os.path.join(scratch, "actions.npz")
        np.savez(actions_path, *episode_actions)
        child = subprocess.run(
            [
                sys.executable,
                "-m",
                "og_marl_omsd.runner.evaluate",
                "--render-videos",
                scenario,
                str(seed),
                str(first_episode),
                actions_path,
                folder,
            ],
            capture_output=True,
            text=True,
        )
    if child.returncode == 0:
        return
    backend = os.environ.get("MUJOCO_GL", "<unset: glfw, needs a display>")
    how = (
        f"crashed (signal {-child.returncode})"
        if child.returncode < 0
        else f"failed: {(child.stderr.strip().splitlines() or ['no message'])[-1]}"
    )
    raise UserError(
        f"video=true: rendering with MUJOCO_GL={backend} {how}. Set MUJOCO_GL=egl (a GPU, or Mesa's "
        "software EGL) or MUJOCO_GL=osmesa (OSMesa installed), or run on a machine with a display. The "
        "evaluation itself finished and was written."
    )


def _render_videos(scenario: str, seed: int, first_episode: int, actions_path: str, folder: str) -> None:
    """The child of :func:`record_videos` (no TensorFlow here)."""
    import gymnasium
    import gymnasium_robotics

    from og_marl_omsd.environments.mamujoco import AGENT_OBSK, MaMuJoCoEnvironment, scenario_spec

    environment = MaMuJoCoEnvironment(scenario, seed=seed)
    gym_scenario, agent_conf = scenario_spec(scenario)
    parallel = gymnasium_robotics.mamujoco_v1.parallel_env(
        gym_scenario, agent_conf, agent_obsk=AGENT_OBSK, render_mode="rgb_array", camera_name="track"
    )  # follows the body
    parallel.single_agent_env = gymnasium.wrappers.RecordVideo(
        parallel.single_agent_env,
        folder,
        episode_trigger=lambda _: True,
        name_prefix=f"seed{seed}-first{first_episode}",
        disable_logger=True,
    )
    environment._environment.close()
    environment._environment = parallel
    environment._resets = first_episode
    stored = np.load(actions_path)
    for index in range(len(stored.files)):
        environment.reset()
        for joint in stored[f"arr_{index}"]:
            _, _, terminals, truncations, _ = environment.step(
                {agent: joint[i] for i, agent in enumerate(environment.agents)}
            )
            if all(terminals.values()) or all(truncations.values()):
                break
    parallel.single_agent_env.close()  # writes the last video


def evaluate_policy(
    policy: Any, environment: Any, num_episodes: int, actions_out: Optional[List[np.ndarray]] = None
) -> Dict[str, Any]:
    """OG-MARL's evaluation loop (team reward = mean over agents) plus the environment's ``get_stats``;
    with ``actions_out`` each episode's joint actions ``(T, N, A)`` are appended to it."""
    from og_marl_omsd.models.losses import team_step_reward  # not at import: the video child must not load TensorFlow

    get_stats = getattr(environment, "get_stats", None)
    if callable(get_stats):
        get_stats()
    returns = []
    for _ in range(num_episodes):
        observations, infos = environment.reset()
        done, episode_return, played = False, 0.0, []
        while not done:
            legal = infos.get("legals") if isinstance(infos, dict) else None
            actions = policy.select_actions(observations, legal)
            if actions_out is not None:
                played.append(np.stack([np.asarray(actions[agent], "float32").reshape(-1) for agent in policy.agents]))
            observations, rewards, terminals, truncations, infos = environment.step(actions)
            episode_return += team_step_reward(rewards)
            done = all(terminals.values()) or all(truncations.values())
        returns.append(episode_return)
        if actions_out is not None:
            actions_out.append(np.stack(played))
    logs = {
        "mean_episode_return": float(np.mean(returns)),
        "max_episode_return": float(np.max(returns)),
        "min_episode_return": float(np.min(returns)),
        "episode_returns": [float(r) for r in returns],
    }
    if callable(get_stats):
        logs.update({key: float(value) for key, value in get_stats().items()})
    return logs


def evaluate_run(
    run_dir: str,
    num_eval_episodes: Optional[int] = None,
    seed: Optional[int] = None,
    first_episode: Optional[int] = None,
    video: bool = False,
) -> Dict[str, Any]:
    """Evaluate a finished run's exported actors (defaults: the run's final evaluation). Returns the record written."""
    finished = load_finished_run(run_dir)
    config, results = finished["config"], finished["results"]
    recorded = results.get("final_evaluation_episodes") or {}
    episodes = int(num_eval_episodes or recorded.get("episodes") or 10 * int(config["num_eval_episodes"]))
    seed = int(config["seed"] if seed is None else seed)
    first = int(first_episode if first_episode is not None else (recorded.get("first_episode") or 0))

    setup_devices()
    from og_marl_omsd import host

    policy = load_checked_policy(run_dir)  # before the environment and any write
    task = config["task"]
    environment = host.get_environment(task["source"], task["env_name"], task["scenario"], seed=seed)
    from og_marl_omsd.environments.mamujoco import MaMuJoCoEnvironment

    if video and not isinstance(environment, MaMuJoCoEnvironment):
        raise UserError(
            "video=true records MaMuJoCo tasks only (through gymnasium's RecordVideo); this run's "
            f"environment is {type(environment).__name__}. Drop video=true."
        )
    if hasattr(environment, "_resets"):
        environment._resets = first  # reset k uses seed + k
    played: Optional[List[np.ndarray]] = [] if video else None
    logs = evaluate_policy(policy, environment, episodes, played)
    close = getattr(environment, "close", None)
    if callable(close):
        close()
    record = {
        "run_dir": run_dir,
        "seed": seed,
        "episodes": episodes,
        "first_episode": first,
        "evaluation": logs,
        "run_final_mean_episode_return": results.get("final_evaluation", {}).get("mean_episode_return"),
    }

    record["provenance"] = collect()
    out_dir = os.path.join(run_dir, "evaluations")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"seed{seed}-episodes{episodes}-first{first}.json")
    write_json(path, record)
    record["path"] = path
    if played is not None:  # video
        folder = os.path.join(run_dir, "videos")
        record_videos(environment.scenario, seed, first, played, folder)
        record["videos"] = folder
    return record


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--render-videos"]:  # the child of record_videos
        scenario, seed, first, actions_path, folder = argv[1:]
        _render_videos(scenario, int(seed), int(first), actions_path, folder)
        return 0
    return cli_entry(lambda: evaluate_and_report(argv), INTERRUPTED)


def evaluate_and_report(argv: List[str]) -> int:
    """Evaluate the run ``argv`` names and print the result (:func:`main` without its error handling)."""

    options = parse_arguments(argv)
    quiet.configure(options.pop("verbose", False))
    record = evaluate_run(**options)
    logs = record["evaluation"]
    line = (
        f"Evaluation of {record['run_dir']}: mean return {logs['mean_episode_return']:.4f} "
        f"(min {logs['min_episode_return']:.4f}, max {logs['max_episode_return']:.4f}) over {record['episodes']} "
        f"episodes, seed {record['seed']}, first episode {record['first_episode']}"
    )
    if "coordination_rate" in logs:
        line += f" | coordination rate {logs['coordination_rate']:.2f}"
    print(line, flush=True)
    if record["run_final_mean_episode_return"] is not None:
        print(f"The run's own final evaluation: mean return {record['run_final_mean_episode_return']:.4f}", flush=True)
    print(f"Written to {record['path']}", flush=True)
    if "videos" in record:
        print(f"Videos in {record['videos']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
