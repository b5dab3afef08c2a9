"""Reproduce the paper's bandit study (Table 1, Fig. 2) and a beta sweep for all four systems.

    python baselines/bandit.py --seeds 20 --out results/bandit [--workers 2]

Per seed, the critics and behaviour models are pretrained once (through the pretrained cache,
so OMSD / BRPO-FAC / BRPO-JAL share one joint critic and BRPO-Ind / BRPO-FAC one set of
independent behaviour models); every (noise setting, beta) then restarts only the actor
stage. System hyperparameters come from the runner's own config (``system=<name> env=bandit``),
so these numbers are what ``python -m og_marl_omsd.run`` gives.

Writes ``table1.json`` ({system: {mean_reward, std_reward, coordination_rate, seeds}} at the
bandit's default setting), ``table1.md``, ``fig2.png``, ``beta_sweep.png``, ``sweep.json``,
and one ``seeds/seed_<k>.json`` per seed (the script resumes from these).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, List

import numpy as np

from og_marl_omsd.support.files import write_json

SYSTEMS = ("omsd", "brpo_ind", "brpo_fac", "brpo_jal")
NOISE_SETTINGS = {  # README, Algorithm notes: "Noise-level range"
    "mode_seeking": {"t_min": 0.02, "t_max": 0.1, "score_weight": "one"},
    "srpo": {"t_min": 0.02, "t_max": 0.98, "score_weight": "sigma_squared"},
}
DEFAULT_SETTING = "mode_seeking"
GRID = np.linspace(-1.0, 1.0, 13)


def compose_run_config(system: str, overrides: List[str]) -> Any:
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="og_marl_omsd.configs", version_base=None):
        return compose(config_name="config", overrides=[f"system={system}", "env=bandit", *overrides])


def run_seed(seed: int, args: argparse.Namespace) -> Dict[str, Any]:
    """All systems, noise settings and betas for one seed; pretrained parts shared via the cache.

    Each system goes through the runner's steps (:mod:`og_marl_omsd.runner.steps`) up to
    pretraining; the actor stage is then swept in memory (no run directory)."""
    import tensorflow as tf

    from og_marl_omsd import host
    from og_marl_omsd.environments.bandit_analysis import action_update_direction
    from og_marl_omsd.runner import steps
    from og_marl_omsd.runner.run import plan_run, prepare_dataset

    start = time.time()
    result: Dict[str, Any] = {"seed": seed, "systems": {}}
    for name in SYSTEMS:
        cfg = compose_run_config(
            name,
            [f"seed={seed}", f"vault_dir={args.vault_dir}", f"pretrained_dir={args.pretrained_dir}"] + args.override,
        )
        system_class, params, dataset, _ = plan_run(cfg)
        params["pretrain_log_every"] = 10**9
        location = prepare_dataset(cfg, dataset)
        environment = steps.make_environment(cfg)
        data = steps.load_dataset(cfg, location, dataset, environment, params)
        result.setdefault("fingerprint", data.fingerprint)
        logger = host.TerminalLogger(log_every=10**9)  # quiet: results go to JSON
        system, buffer = steps.build_system_and_buffer(cfg, system_class, params, environment, logger, data)
        steps.pretrain(system, buffer, cfg, data)
        actor_steps = int(cfg.training_steps)
        runs: Dict[str, Any] = {}
        for setting, noise in NOISE_SETTINGS.items():
            for beta in args.betas:
                system.restart_actor_training(beta=beta, **noise)
                record = _RecordingLogger()
                system.logger = record
                system.train(
                    buffer, training_steps=actor_steps, evaluation_every=args.trajectory_every, num_eval_episodes=1
                )
                final = record.evaluations[-1]
                runs[f"{setting}/beta={beta:g}"] = {
                    "setting": setting,
                    "beta": beta,
                    "final_action": [final["mean_action_agent_0"], final["mean_action_agent_1"]],
                    "reward": final["mean_episode_return"],
                    "coordinated": final["coordination_rate"] >= 0.5,
                    "trajectory": [[e["mean_action_agent_0"], e["mean_action_agent_1"]] for e in record.evaluations],
                }
                if setting == DEFAULT_SETTING and beta == args.table_beta and seed == args.field_seed:
                    grid = np.stack(np.meshgrid(GRID, GRID, indexing="xy"), -1).reshape(-1, 2, 1).astype("float32")
                    direction = action_update_direction(system, tf.ones([grid.shape[0], 1]), tf.constant(grid))
                    runs[f"{setting}/beta={beta:g}"]["direction_field"] = direction.numpy().reshape(-1, 2).tolist()
        result["systems"][name] = runs
        print(
            f"[bandit] seed {seed} {name}: "
            + ", ".join(
                f"{k}: a=({v['final_action'][0]:+.2f},{v['final_action'][1]:+.2f})"
                for k, v in runs.items()
                if k.startswith(DEFAULT_SETTING)
            ),
            flush=True,
        )
    result["wall_time_seconds"] = time.time() - start
    return result


class _RecordingLogger:
    def __init__(self) -> None:
        self.evaluations: List[Dict[str, float]] = []

    def write(self, logs: Dict[str, Any], force: bool = False) -> None:
        if "evaluation/mean_episode_return" in logs:
            self.evaluations.append(
                {k.split("/", 1)[1]: float(v) for k, v in logs.items() if k.startswith("evaluation/")}
            )

    def close(self) -> None:
        return


def summarise(results: List[Dict[str, Any]], args: argparse.Namespace) -> Dict[str, Any]:
    sweep: Dict[str, Any] = {}
    for name in SYSTEMS:
        for setting in NOISE_SETTINGS:
            for beta in args.betas:
                key = f"{setting}/beta={beta:g}"
                runs = [r["systems"][name][key] for r in results]
                rewards = np.array([run["reward"] for run in runs])
                sweep.setdefault(name, {}).setdefault(setting, {})[f"{beta:g}"] = {
                    "mean_reward": float(rewards.mean()),
                    "std_reward": float(rewards.std()),
                    "coordination_rate": float(np.mean([run["coordinated"] for run in runs])),
                    "coordinated_seeds": int(np.sum([run["coordinated"] for run in runs])),
                    "seeds": len(runs),
                }
    table = {
        name: {
            k: v
            for k, v in sweep[name][DEFAULT_SETTING][f"{args.table_beta:g}"].items()
            if k in ("mean_reward", "std_reward", "coordination_rate", "seeds")
        }
        for name in SYSTEMS
    }
    return {"table1": table, "sweep": sweep}


def write_report(results: List[Dict[str, Any]], args: argparse.Namespace) -> None:
    summary = summarise(results, args)
    write_json(os.path.join(args.out, "table1.json"), summary["table1"])
    write_json(os.path.join(args.out, "sweep.json"), summary["sweep"])
    lines = [
        f"Bandit, {len(results)} seeds, {DEFAULT_SETTING} noise levels (t in [0.02, 0.1], w = 1), "
        f"beta = {args.table_beta:g}",
        "",
        "| system | mean reward | std | coordination rate |",
        "|---|---|---|---|",
    ]
    for name in SYSTEMS:
        row = summary["table1"][name]
        lines.append(
            f"| {name} | {row['mean_reward']:.3f} | {row['std_reward']:.3f} | {row['coordination_rate']:.2f} |"
        )
    lines += [
        "",
        "Beta sweep (coordination rate / mean reward):",
        "",
        "| setting | beta | " + " | ".join(SYSTEMS) + " |",
        "|---|---|" + "---|" * len(SYSTEMS),
    ]
    for setting in NOISE_SETTINGS:
        for beta in args.betas:
            cells = [
                f"{summary['sweep'][n][setting][f'{beta:g}']['coordination_rate']:.2f} / "
                f"{summary['sweep'][n][setting][f'{beta:g}']['mean_reward']:.2f}"
                for n in SYSTEMS
            ]
            lines.append(f"| {setting} | {beta:g} | " + " | ".join(cells) + " |")
    with open(os.path.join(args.out, "table1.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot_fig2(results, args)
    plot_beta_sweep(summary["sweep"], args)


def plot_fig2(results: List[Dict[str, Any]], args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from og_marl_omsd.environments.bandit import generate_bandit_experience

    data = generate_bandit_experience(200_000)["actions"][..., 0]
    key = f"{DEFAULT_SETTING}/beta={args.table_beta:g}"
    fig, axes = plt.subplots(1, 1 + len(SYSTEMS), figsize=(4 * (1 + len(SYSTEMS)), 4.2))
    density, xedges, yedges = np.histogram2d(data[:, 0], data[:, 1], bins=40, range=[[-1, 1], [-1, 1]])
    # Clipping to [-1, 1] piles mass into the edge bins: scale colours and contours by the interior.
    interior_max = density[1:-1, 1:-1].max()
    padded = np.pad(density, 1, mode="edge")
    smooth = (
        sum(
            padded[1 + i : padded.shape[0] - 1 + i, 1 + j : padded.shape[1] - 1 + j]
            for i in (-1, 0, 1)
            for j in (-1, 0, 1)
        )
        / 9.0
    )
    axes[0].imshow(density.T, origin="lower", extent=[-1, 1, -1, 1], cmap="viridis", vmax=interior_max)
    axes[0].set_title("behaviour data density (edges: clipped mass)", fontsize=10)
    field_seed = next((r for r in results if "direction_field" in r["systems"][SYSTEMS[0]][key]), None)
    for ax, name in zip(axes[1:], SYSTEMS):
        ax.contour(
            0.5 * (xedges[1:] + xedges[:-1]),
            0.5 * (yedges[1:] + yedges[:-1]),
            np.asarray(smooth).T,
            levels=interior_max * np.array([0.1, 0.3, 0.6]),
            colors="gray",
            linewidths=0.8,
        )
        if field_seed is not None:
            field = np.array(field_seed["systems"][name][key]["direction_field"])
            gx, gy = np.meshgrid(GRID, GRID, indexing="xy")
            norm = np.linalg.norm(field, axis=1, keepdims=True) + 1e-8
            unit = field / norm
            ax.quiver(
                gx.ravel(),
                gy.ravel(),
                unit[:, 0],
                unit[:, 1],
                np.log10(norm[:, 0]),
                cmap="coolwarm",
                scale=25,
                width=0.004,
            )
        for result in results:
            trajectory = np.array(result["systems"][name][key]["trajectory"])
            ax.plot(trajectory[:, 0], trajectory[:, 1], "-", color="black", alpha=0.4, linewidth=0.8)
            ax.plot(*trajectory[-1], "o", color="tab:red" if trajectory[-1].prod() < 0 else "tab:green", markersize=4)
        ax.set_xlim(-1.05, 1.05)
        ax.set_ylim(-1.05, 1.05)
        ax.set_title(f"{name}: update field + trajectories")
        ax.set_xlabel("a_1")
    axes[0].set_ylabel("a_2")
    fig.suptitle(
        f"Bandit: {DEFAULT_SETTING} noise levels, beta={args.table_beta:g}; field from seed {args.field_seed}, "
        f"trajectories of {len(results)} seeds (green end: coordinated)"
    )
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "fig2.png"), dpi=110)
    plt.close(fig)


def plot_beta_sweep(sweep: Dict[str, Any], args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    titles = {"mode_seeking": "t in [0.02, 0.1], w = 1 (default)", "srpo": "t in [0.02, 0.98], w = sigma^2 (SRPO)"}
    for row, setting in enumerate(NOISE_SETTINGS):
        for col, metric in enumerate(("coordination_rate", "mean_reward")):
            ax = axes[row, col]
            for name in SYSTEMS:
                values = [sweep[name][setting][f"{b:g}"][metric] for b in args.betas]
                ax.plot(args.betas, values, "o-", label=name)
            ax.set_xscale("log")
            ax.set_ylim(-0.05 if metric == "coordination_rate" else -1.05, 1.05)
            ax.set_title(f"{metric.replace('_', ' ')}: {titles[setting]}", fontsize=9)
            ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("beta")
    axes[0, 0].legend()
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "beta_sweep.png"), dpi=110)
    plt.close(fig)


def main(argv: List[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--out", default="results/bandit")
    parser.add_argument("--betas", type=float, nargs="+", default=[0.005, 0.05, 0.5, 5.0])
    parser.add_argument("--table-beta", type=float, default=0.5, help="beta of Table 1 / Fig. 2 (the bandit default)")
    parser.add_argument("--field-seed", type=int, default=0, help="seed whose direction fields Fig. 2 shows")
    parser.add_argument("--trajectory-every", type=int, default=20, help="actor steps between trajectory points")
    parser.add_argument("--workers", type=int, default=1, help="parallel worker processes (seeds split among them)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="TF threads per worker (default: CPU cores // workers; oversubscribed TF is slower)",
    )
    parser.add_argument("--only-seeds", type=str, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--vault-dir", default="vaults")
    parser.add_argument("--pretrained-dir", default="runs/pretrained")
    parser.add_argument("override", nargs="*", help="extra runner overrides, e.g. training_steps=1000")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.workers < 1:
        parser.error("--seeds and --workers must be >= 1")
    if args.table_beta not in args.betas:
        parser.error("--table-beta must be one of --betas")
    seed_dir = os.path.join(args.out, "seeds")
    os.makedirs(seed_dir, exist_ok=True)
    seeds = range(args.seeds) if args.only_seeds is None else [int(s) for s in args.only_seeds.split(",")]
    todo = [s for s in seeds if not os.path.isfile(os.path.join(seed_dir, f"seed_{s}.json"))]
    start = time.time()
    if todo:  # generate the dataset once, before workers race for it
        from og_marl_omsd.datasets.generate import ensure_datasets

        ensure_datasets("bandit", rel_dir=args.vault_dir)
    if args.workers > 1 and args.only_seeds is None and len(todo) > 1:
        chunks = [todo[k :: args.workers] for k in range(args.workers)]
        base = [
            sys.executable,
            os.path.abspath(__file__),
            "--out",
            args.out,
            "--vault-dir",
            args.vault_dir,
            "--pretrained-dir",
            args.pretrained_dir,
            "--table-beta",
            str(args.table_beta),
            "--field-seed",
            str(args.field_seed),
            "--trajectory-every",
            str(args.trajectory_every),
            "--betas",
            *map(str, args.betas),
            "--only-seeds",
        ]
        threads = str(args.threads or max(1, (os.cpu_count() or 1) // args.workers))
        env = {**os.environ, "TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": "1"}
        workers = [
            subprocess.Popen([*base, ",".join(map(str, chunk)), *args.override], env=env) for chunk in chunks if chunk
        ]
        if any(worker.wait() != 0 for worker in workers):
            sys.exit("a worker failed; rerun to resume")
    else:
        for seed in todo:
            result = run_seed(seed, args)
            path = os.path.join(seed_dir, f"seed_{seed}.json")
            write_json(path, result, indent=None)
            print(f"[bandit] seed {seed} done in {result['wall_time_seconds']:.0f} s", flush=True)
    if args.only_seeds is not None:
        return
    results = []
    for seed in range(args.seeds):
        with open(os.path.join(seed_dir, f"seed_{seed}.json")) as handle:
            results.append(json.load(handle))
    write_report(results, args)
    print(
        f"[bandit] {len(results)} seeds; this invocation took {time.time() - start:.0f} s; "
        f"per-seed compute {sum(r['wall_time_seconds'] for r in results):.0f} s in all",
        flush=True,
    )


if __name__ == "__main__":
    main()
