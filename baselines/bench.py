"""Training throughput and action latency of the four systems, beside the machine's matmul FLOP/s.

    python baselines/bench.py --out DIR [--legacy-src /path/to/old/checkout]

Writes ``DIR/bench.json`` and prints a table:

- ``train_steps_per_s``: steps per second of every stage (critic, behaviour model, actors)
  of every system on the quick 2halfcheetah vault, at the ``mamujoco`` preset sizes and at
  the authors' sizes (batch 512, diffusion 256/1024/3). A stage shared by two systems (the
  joint critic of OMSD, BRPO-FAC and BRPO-JAL; the independent behaviour models of BRPO-Ind
  and BRPO-FAC) is measured once. Rates are steps between the stage's first and last log
  write over the time between them, so compilation and data setup are not counted.
- ``flops_per_step``: matmul FLOPs of one step, from the layer shapes (2 * in * out * rows
  per layer forward, twice that backward; LayerNorm and element-wise ops not counted);
  ``matmul_fraction``: those FLOPs times the rate over the dense-matmul FLOP/s measured in
  the same run (an XLA-compiled float32 ``n x n`` matmul, measured before and after every
  training measurement): over the best of the run, and (``matmul_fraction_adjacent``) over
  the better of the two taken just before and after that measurement (same machine load).
- ``stage_dots_gflops``: the rate of the OMSD behaviour and actor stages' own matmul shapes
  (forward and backward dots, batch rows) run alone in one XLA call: the ceiling of
  ``matmul_fraction`` that those shapes leave, whatever the rest of the step costs.
- ``latency``: microseconds for one decentralised joint action from the actors (compiled,
  batch 1; and ``actors_numpy``: through :class:`og_marl_omsd.runner.policy.NumpyActors`, the way a
  run's evaluations and a loaded policy act) and for one joint action sampled from the
  behaviour diffusion model by DDIM with 5, 20 and 50 denoising steps (compiled too), at the
  preset sizes: per Python call of the compiled function (median; includes TF's call
  overhead), and ``in_graph``: compute only, many actions chained in one compiled call (each
  input depends on the previous action).
- ``peak_memory_mib``: the peak resident memory of each measuring process (and the GPU's
  peak when one is used).
- ``legacy``: with ``--legacy-src``, the same preset measurements of the code in that
  checkout (its package put first on ``PYTHONPATH``), in the same run.
- ``og_marl``: OG-MARL's ``iddpg_bc`` and ``omar`` steps/s when ``og_marl`` is importable,
  else the reason they were skipped.

Every measurement group runs in its own process with TF's default thread settings; the
1-minute load average is recorded beside each (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

SYSTEMS = ("omsd", "brpo_fac", "brpo_ind", "brpo_jal")
STAGES = ("critic", "behaviour", "actors")
# Which system measures each shared stage (the others reuse it).
STAGE_OWNER = {
    ("brpo_fac", "critic"): "omsd",
    ("brpo_jal", "critic"): "omsd",
    ("brpo_fac", "behaviour"): "brpo_ind",
}
SIZES = {
    "preset": {"overrides": [], "batch_size": 256, "log_every": 100, "logs": 3},
    "authors": {
        "overrides": [
            "system.diffusion_width=256",
            "system.diffusion_hidden=1024",
            "system.diffusion_blocks=3",
            "system.critic_hidden_sizes=[256,256]",
            "system.actor_hidden_sizes=[256,256]",
        ],
        "batch_size": 512,
        "log_every": 50,
        "logs": 3,
    },
}
LEGACY = {"log_every": 50, "logs": 3}
DIFFUSION_STEPS = (5, 20, 50)
OG_MARL_STEPS = {"iddpg_bc": 300, "omar": 60}  # steps timed per OG-MARL system (OMAR: ~3-10 steps/s here)
MATMUL_SIZE = 1024


# ---------------------------------------------------------------------- workers (one process each)
def _peak_memory_mib() -> Dict[str, float]:
    peak = {"process_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        peak["gpu_mib"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    return peak


def worker_matmul(spec: Dict[str, Any]) -> Dict[str, Any]:
    import tensorflow as tf

    n, repeats = int(spec.get("size", MATMUL_SIZE)), 8
    a = tf.random.normal([n, n], seed=1)
    b = tf.random.normal([n, n], seed=2) / float(n) ** 0.5

    @tf.function(jit_compile=True)
    def chain(x):
        for _ in range(repeats):
            x = tf.linalg.matmul(x, b)
        return x

    chain(a).numpy()
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        chain(a).numpy()
        best = max(best, 2.0 * n**3 * repeats / (time.perf_counter() - start))
    return {"gflops": best / 1e9, "size": n}


class _TimingLogger:
    """Records the time of every write with the step it reports (pretraining or actor)."""

    def __init__(self):
        self.records: List[tuple] = []

    def write(self, logs: Dict[str, Any], force: bool = False) -> None:
        now = time.perf_counter()
        for key, value in logs.items():
            if key.startswith("pretrain/") and key.endswith("/step"):
                self.records.append((key.split("/")[1], int(float(value)), now))
            elif key == "training_steps":
                self.records.append(("actors", int(float(value)), now))

    def close(self) -> None:
        pass

    def rate(self, tag: str) -> Optional[float]:
        points = [(step, t) for name, step, t in self.records if name == tag]
        if len(points) < 2:
            return None
        (s0, t0), (s1, t1) = points[0], points[-1]
        return (s1 - s0) / max(t1 - t0, 1e-9)


def _setup_devices() -> None:
    """The runner's device setup, in a worker (code older than ``runner/devices.py``, given by
    ``--legacy-src``, set the devices up when its modules were imported)."""
    try:
        from og_marl_omsd.runner.devices import setup_devices
    except ImportError:
        return
    setup_devices()


def _compose(system: str, overrides: List[str]) -> Any:
    from hydra import compose, initialize_config_module

    import og_marl_omsd.runner.run  # noqa: F401 (registers the run schema)

    with initialize_config_module(config_module="og_marl_omsd.configs", version_base=None):
        return compose(config_name="config", overrides=[f"system={system}", "env=mamujoco", *overrides])


def _setup(spec: Dict[str, Any], system: str, extra: Dict[str, Any]):
    import inspect

    from omegaconf import OmegaConf

    from og_marl_omsd import host
    from og_marl_omsd.datasets.generate import ensure_datasets
    from og_marl_omsd.runner.registry import load_system

    cfg = _compose(system, spec["overrides"])
    location = ensure_datasets("2halfcheetah-quick", ["Medium"], rel_dir=spec["vault_dir"])
    environment = host.get_environment(cfg.task.source, cfg.task.env_name, cfg.task.scenario, seed=0)
    buffer = host.FlashbaxReplayBuffer(sequence_length=2, batch_size=spec["batch_size"], seed=0)
    buffer.populate_from_vault(
        location.source, location.env, location.scenario, "Medium", rel_dir=os.path.abspath(location.rel_dir)
    )
    cls = load_system(system)
    known = inspect.signature(cls).parameters
    system_config: Dict[str, Any] = OmegaConf.to_container(cfg.system)  # type: ignore[assignment]
    params = {k: v for k, v in system_config.items() if k != "name" and k in known}
    params.update({k: v for k, v in extra.items() if k in known})
    return cls, environment, buffer, params


def _module_flops(module: Any, rows: int) -> float:
    """Forward matmul FLOPs of ``module`` on ``rows`` input rows, from its weight shapes."""
    total = 0.0
    for variable in module.trainable_variables:
        shape = list(variable.shape)
        if len(shape) >= 2 and variable.name.split("/")[-1].startswith("w"):
            count = 1
            for dim in shape:
                count *= int(dim)
            total += 2.0 * count * rows
    return total


def _flops(system: Any, batch: int) -> Dict[str, float]:
    n = system.num_agents
    critic, model, actors = system.critic, system.behaviour_model, system.actors
    q = _module_flops(critic._q, batch) if hasattr(critic, "_q") and not isinstance(critic._q, tuple) else None
    if q is None:  # per-MLP layout (the code before stacking)
        q = sum(_module_flops(m, batch) for m in (*critic._q[0], *critic._q[1]))
        v = sum(_module_flops(m, batch) for m in critic._v)
    else:
        v = _module_flops(critic._v, batch)
    shared_model = getattr(model, "shared", False)
    b = _module_flops(model, batch * (n if shared_model else 1))
    shared_actor = getattr(actors, "shared", False)
    a = _module_flops(actors, batch * (n if shared_actor else 1))
    return {
        # Q_target fwd + V fwd/bwd (value loss); V fwd + Q fwd/bwd (Q loss)
        "critic": 4.0 * q + 4.0 * v,
        "behaviour": 3.0 * b,
        # actors fwd/bwd; behaviour fwd; Q_target fwd + input gradient
        "actors": 3.0 * a + b + 2.0 * q,
    }


def _field(config: Any, name: str) -> Any:
    """A stage config's field (a dataclass now; a dict in the code before it, for --legacy-src)."""
    return config[name] if isinstance(config, dict) else getattr(config, name)


def worker_train(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Train steps/s of every stage this worker owns, for every system."""
    import numpy as np
    import tensorflow as tf

    import og_marl_omsd

    results: Dict[str, Any] = {"package": os.path.dirname(og_marl_omsd.__file__), "systems": {}}
    steps = spec["log_every"] * spec["logs"]
    for system in spec.get("systems", SYSTEMS):
        owned = [stage for stage in STAGES if (system, stage) not in STAGE_OWNER]
        logger = _TimingLogger()
        extra = {
            "critic_steps": steps if "critic" in owned else 0,
            "behaviour_steps": steps if "behaviour" in owned else 0,
            "pretrain_log_every": spec["log_every"],
            "seed": 0,
        }
        if "steps_per_call" in spec:
            extra["steps_per_call"] = spec["steps_per_call"]
        cls, environment, buffer, params = _setup(spec, system, extra)
        params.update(extra)
        tf.random.set_seed(0)
        instance = cls(environment, logger, **params)
        instance.evaluate = lambda num_eval_episodes=0: {}  # throughput only
        load = {"before": os.getloadavg()[0]}
        instance.pretrain(buffer)
        instance.train(buffer, training_steps=steps, evaluation_every=None, num_eval_episodes=0)
        load["after"] = os.getloadavg()[0]
        names = {
            "critic": f"critic_{_field(instance.critic_config, 'kind')}",
            "behaviour": f"behaviour_{_field(instance.behaviour_config, 'factorisation')}",
            "actors": "actors",
        }
        rates = {stage: logger.rate(names[stage]) for stage in owned}
        results["systems"][system] = {
            "steps_per_s": rates,
            "flops_per_step": _flops(instance, spec["batch_size"]),
            "load_average_1min": load,
            "steps_timed": steps - spec["log_every"],
        }
        del instance, buffer
    results["peak_memory_mib"] = _peak_memory_mib()
    results["numpy"] = np.__version__
    return results


def worker_latency(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Action latency (microseconds, median) of the actors and of diffusion sampling."""
    import numpy as np
    import tensorflow as tf

    results: Dict[str, Any] = {}
    for system in SYSTEMS:
        cls, environment, buffer, params = _setup(spec, system, {"critic_steps": 0, "behaviour_steps": 0})
        params.update({"critic_steps": 0, "behaviour_steps": 0})
        instance = cls(environment, _TimingLogger(), **params)
        instance.pretrain(buffer)
        n, obs_dim, action_dim = instance.num_agents, instance.observation_dim, instance.action_dim
        observations = tf.random.normal([1, n, obs_dim], seed=3)
        state = tf.random.normal([1, instance.state_dim], seed=4)
        noise = tf.random.normal([1, n, action_dim], seed=5)
        act = tf.function(instance.actors, jit_compile=True)

        scale = 0.02 if spec.get("smoke") else 1.0  # --smoke: a handful of calls, to prove the code runs

        def median_us(fn, *args, calls=200, scale=scale):
            calls = max(2, int(calls * scale))
            fn = fn.get_concrete_function(*args)  # what a deployed policy calls: no retracing checks
            fn(*args).numpy()
            times = []
            for _ in range(calls):
                start = time.perf_counter()
                fn(*args).numpy()
                times.append(time.perf_counter() - start)
            return float(np.median(times) * 1e6)

        def numpy_median_us(fn, argument, calls=2000, scale=scale):
            calls = max(2, int(calls * scale))
            fn(argument)
            times = []
            for _ in range(calls):
                start = time.perf_counter()
                fn(argument)
                times.append(time.perf_counter() - start)
            return float(np.median(times) * 1e6)

        def chained(fn, first, repeats):
            """``repeats`` actions in one compiled call, each input depending on the previous
            action (so nothing is hoisted out of the loop): the compute latency per action."""

            @tf.function(jit_compile=True)
            def run(x, *rest):
                def body(i, carry):
                    return i + 1, carry + 1e-6 * tf.reduce_sum(fn(first(x, carry), *rest))

                return tf.while_loop(lambda i, _: i < repeats, body, (tf.constant(0), tf.zeros([])))[1]

            return run

        from og_marl_omsd.runner.policy import NumpyActors

        acting = NumpyActors.of(instance.actors)  # how evaluations and loaded policies act
        batch_one = observations.numpy()
        latency = {"actors": median_us(act, observations), "actors_numpy": numpy_median_us(acting, batch_one)}
        in_graph = {
            "actors": median_us(chained(instance.actors, lambda x, c: x + c, 200), observations, calls=30) / 200
        }
        for steps in DIFFUSION_STEPS:
            sample = tf.function(lambda s, z, k=steps, m=instance: m.behaviour_model.sample(s, k, z), jit_compile=True)
            latency[f"diffusion_{steps}"] = median_us(sample, state, noise, calls=100 if steps < 50 else 40)
            repeats = max(200 // steps, 2)
            loop = chained(
                lambda s, z, k=steps, m=instance: m.behaviour_model.sample(s, k, z), lambda x, c: x + c, repeats
            )
            in_graph[f"diffusion_{steps}"] = median_us(loop, state, noise, calls=10) / repeats
        latency["speedup_vs_diffusion_20"] = latency["diffusion_20"] / latency["actors"]
        latency["speedup_numpy_actors_vs_diffusion_20"] = latency["diffusion_20"] / latency["actors_numpy"]
        in_graph["speedup_vs_diffusion_20"] = in_graph["diffusion_20"] / in_graph["actors"]
        latency["in_graph"] = in_graph
        results[system] = latency
    return {"systems": results, "peak_memory_mib": _peak_memory_mib()}


def _layer_shapes(module: Any) -> List[tuple]:
    """``(groups, in, out)`` of every stacked weight of ``module`` (``(in, out)`` as one group)."""
    shapes = []
    for variable in module.trainable_variables:
        if variable.name.split("/")[-1].startswith("w") and len(variable.shape) >= 2:
            dims = [int(d) for d in variable.shape]
            shapes.append(tuple(dims) if len(dims) == 3 else (1, *dims))
    return shapes


def _dots_rate(layers: List[tuple], repeats: int = 4) -> float:
    """GFLOP/s of XLA float32 matmuls of exactly these ``(groups, rows, in, out, passes)`` shapes
    and nothing else: pass 1 = forward ``x W``; 2 adds the input gradient ``g W^T``; 3 adds the
    weight gradient ``x^T g``. The ceiling a step made of those dots can reach. The operands are
    arguments (nothing constant-folds) and every repeat shifts them (nothing is shared)."""
    import tensorflow as tf

    operands = [
        [tf.random.normal([g, r, i]), tf.random.normal([g, i, o]), tf.random.normal([g, r, o])]
        for g, r, i, o, _ in layers
    ]
    passes = [p for *_, p in layers]

    @tf.function(jit_compile=True)
    def run(operands, shift):
        total = tf.zeros([])
        for k in range(repeats):
            for (x, w, grad), count in zip(operands, passes):
                x, grad = x + shift * k, grad + shift * k
                total += tf.reduce_sum(tf.linalg.matmul(x, w))
                if count >= 2:
                    total += tf.reduce_sum(tf.linalg.matmul(grad, w, transpose_b=True))
                if count >= 3:
                    total += tf.reduce_sum(tf.linalg.matmul(x, grad, transpose_a=True))
        return total

    flops = repeats * sum(2.0 * g * r * i * o * p for g, r, i, o, p in layers)
    run(operands, tf.constant(1.0)).numpy()
    best = 0.0
    for k in range(5):
        start = time.perf_counter()
        run(operands, tf.constant(1.0 + k)).numpy()
        best = max(best, flops / (time.perf_counter() - start))
    return best / 1e9


def worker_dots(spec: Dict[str, Any]) -> Dict[str, Any]:
    """The matmul rate of the OMSD behaviour and actor stages' own layer shapes, alone (no
    element-wise work, no optimiser): how much of the dense-matmul rate those shapes allow."""
    cls, environment, buffer, params = _setup(spec, "omsd", {"critic_steps": 0, "behaviour_steps": 0})
    params.update({"critic_steps": 0, "behaviour_steps": 0})
    instance = cls(environment, _TimingLogger(), **params)
    instance.pretrain(buffer)
    rows = spec["batch_size"]

    def layers(module: Any, passes: int) -> List[tuple]:
        return [(g, rows, i, o, passes) for g, i, o in _layer_shapes(module)]

    q = _layer_shapes(instance.critic._q)
    return {
        "behaviour": _dots_rate(layers(instance.behaviour_model, 3)),
        # the actor step: actors forward/backward, behaviour model forward, Q forward + input gradient
        "actors": _dots_rate(
            layers(instance.actors, 3) + layers(instance.behaviour_model, 1) + [(g, rows, i, o, 2) for g, i, o in q]
        ),
    }


def worker_og_marl(spec: Dict[str, Any]) -> Dict[str, Any]:
    """OG-MARL's ``iddpg_bc`` and ``omar`` train steps/s through the same system loading, vault and
    replay buffer (batch size, sequence length 2) as the plugin's stages, in OG-MARL's own loop
    (one Python call and one buffer sample per step), with their configs' default sizes."""
    from og_marl_omsd import host

    if host.HOST != "og_marl":
        return {
            "skipped": "og_marl is not importable in this environment (OG-MARL is not on PyPI and is not "
            "installed here), so its iddpg_bc and omar were not measured."
        }
    results: Dict[str, Any] = {"systems": {}}
    for system, steps in OG_MARL_STEPS.items():
        cls, environment, buffer, params = _setup(spec, system, {})
        logger = _TimingLogger()
        instance = cls(environment, logger, **params)
        instance.evaluate = lambda num_eval_episodes=0: {}  # throughput only
        load = {"before": os.getloadavg()[0]}
        instance.train(buffer, training_steps=steps, evaluation_every=None, num_eval_episodes=0)
        load["after"] = os.getloadavg()[0]
        results["systems"][system] = {
            "steps_per_s": logger.rate("actors"),
            "steps_timed": steps - 1,
            "hyperparameters": params,
            "load_average_1min": load,
        }
    results["batch_size"] = spec["batch_size"]
    results["peak_memory_mib"] = _peak_memory_mib()
    return results


WORKERS = {
    "matmul": worker_matmul,
    "dots": worker_dots,
    "train": worker_train,
    "latency": worker_latency,
    "og_marl": worker_og_marl,
}


# ---------------------------------------------------------------------- orchestration
def run_worker(kind: str, spec: Dict[str, Any], pythonpath: Optional[str] = None) -> Dict[str, Any]:
    env = dict(os.environ)
    for key in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        env.pop(key, None)  # TF's default threads
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    start = time.time()
    process = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", kind, "--spec", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
    )
    lines = [line for line in process.stdout.splitlines() if line.startswith("BENCH_RESULT ")]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"bench worker {kind} failed ({process.returncode}):\n{process.stderr[-4000:]}")
    result = json.loads(lines[-1][len("BENCH_RESULT ") :])
    result["wall_seconds"] = time.time() - start
    print(
        f"[bench] {kind}{' (legacy)' if pythonpath else ''} done in {result['wall_seconds']:.0f} s "
        f"(load {os.getloadavg()[0]:.2f})",
        flush=True,
    )
    return result


def stage_table(train: Dict[str, Any]) -> Dict[str, Dict[str, Dict[str, float]]]:
    """{system: {stage: {steps_per_s, flops_per_step}}} with shared stages filled in from their owner."""
    table: Dict[str, Dict[str, Dict[str, float]]] = {}
    for system in SYSTEMS:
        table[system] = {}
        for stage in STAGES:
            owner = STAGE_OWNER.get((system, stage), system)
            data = train["systems"][owner]
            table[system][stage] = {
                "steps_per_s": data["steps_per_s"][stage],
                "flops_per_step": data["flops_per_step"][stage],
            }
    return table


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="output directory (bench.json)")
    parser.add_argument("--legacy-src", default=None, help="a checkout of the code to compare with (e.g. /work/main)")
    parser.add_argument(
        "--vault-dir", default=None, help="vault root for the quick 2halfcheetah vault (default OUT/vaults)"
    )
    parser.add_argument("--sizes", default="preset,authors", help="comma-separated: preset, authors")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny counts (preset sizes, 2 logs of 2 steps, few calls): CI's check"
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--spec", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _setup_devices()
        result = WORKERS[args.worker](json.loads(args.spec or "{}"))
        print("BENCH_RESULT " + json.dumps(result), flush=True)
        return 0
    if not args.out:
        parser.error("--out DIR is required")
    os.makedirs(args.out, exist_ok=True)
    vault_dir = os.path.abspath(args.vault_dir or os.path.join(args.out, "vaults"))
    start = time.time()
    sizes = [s for s in args.sizes.split(",") if s]
    smoke: Dict[str, Any] = {}
    if args.smoke:
        sizes, smoke = ["preset"], {"smoke": True, "log_every": 2, "logs": 2, "size": 64}
    report: Dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "matmul": [],
        "train": {},
        "legacy": {},
        "load_average_1min_start": os.getloadavg()[0],
    }

    def matmul() -> float:
        report["matmul"].append(run_worker("matmul", {"size": smoke["size"]} if smoke else {}))
        return report["matmul"][-1]["gflops"]

    # A matmul measurement before and after every training measurement: each is compared
    # with the better of the two beside it (same load), and with the best of the whole run.
    adjacent: Dict[str, float] = {}
    before = matmul()
    preset = {**SIZES["preset"], "vault_dir": vault_dir, **smoke}
    if args.legacy_src:  # old and new back to back
        report["legacy"]["preset"] = run_worker(
            "train", {**preset, **LEGACY}, pythonpath=os.path.abspath(args.legacy_src)
        )
        report["legacy"]["source"] = os.path.abspath(args.legacy_src)
        after = matmul()
        adjacent["old/preset"], before = max(before, after), after
    for size in sizes:
        report["train"][size] = run_worker("train", {**SIZES[size], "vault_dir": vault_dir, **smoke})
        after = matmul()
        adjacent[f"new/{size}"], before = max(before, after), after
    report["stage_dots_gflops"] = run_worker("dots", preset)
    report["latency"] = run_worker("latency", preset)
    report["og_marl"] = run_worker("og_marl", preset)
    peak = max(m["gflops"] for m in report["matmul"])
    report["matmul_gflops"] = peak
    report["matmul_gflops_adjacent"] = adjacent

    summary: Dict[str, Any] = {}
    for label, source in [(f"new/{s}", report["train"][s]) for s in sizes] + (
        [("old/preset", report["legacy"]["preset"])] if args.legacy_src else []
    ):
        table = stage_table(source)
        for system in table:
            for row in table[system].values():
                rate = row["steps_per_s"]
                row["gflops_achieved"] = None if rate is None else rate * row["flops_per_step"] / 1e9
                row["matmul_fraction"] = None if rate is None else row["gflops_achieved"] / peak
                row["matmul_fraction_adjacent"] = None if rate is None else row["gflops_achieved"] / adjacent[label]
        summary[label] = table
    report["train_steps_per_s"] = summary
    report["wall_seconds"] = time.time() - start
    with open(os.path.join(args.out, "bench.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    print_table(report)
    return 0


def print_table(report: Dict[str, Any]) -> None:
    peak = report["matmul_gflops"]
    print(
        f"\nDense matmul ({report['matmul'][0]['size']}^3, XLA, float32): "
        + ", ".join(f"{m['gflops']:.1f}" for m in report["matmul"])
        + f" GFLOP/s (best {peak:.1f})"
    )
    print(
        "Beside each measurement: "
        + ", ".join(f"{k} {v:.1f}" for k, v in report["matmul_gflops_adjacent"].items())
        + " GFLOP/s (the better of the matmuls just before and after it)"
    )
    print(
        f"{'code/sizes':<15} {'system':<9} {'stage':<10} {'steps/s':>9} {'MFLOP/step':>11} {'GFLOP/s':>8} "
        f"{'of best':>8} {'of beside':>9}"
    )
    for label, table in report["train_steps_per_s"].items():
        for system, stages in table.items():
            for stage, row in stages.items():
                rate = row["steps_per_s"]
                if rate is None:
                    continue
                print(
                    f"{label:<15} {system:<9} {stage:<10} {rate:>9.1f} {row['flops_per_step'] / 1e6:>11.1f} "
                    f"{row['gflops_achieved']:>8.1f} {100 * row['matmul_fraction']:>7.0f}% "
                    f"{100 * row['matmul_fraction_adjacent']:>8.0f}%"
                )
    for kind, title in (
        ("call", "per Python call of a compiled function"),
        ("in_graph", "compute only: many actions chained in one compiled call"),
    ):
        print(f"\nAction latency, microseconds ({title})")
        numpy_column = kind == "call"
        print(
            f"{'system':<9} {'actors':>8} "
            + (f"{'numpy':>8} " if numpy_column else "")
            + " ".join(f"{f'diff{k}':>8}" for k in DIFFUSION_STEPS)
            + f" {'x diff20':>9}"
            + (f" {'numpy x diff20':>15}" if numpy_column else "")
        )
        for system, row in report["latency"]["systems"].items():
            row = row if kind == "call" else row["in_graph"]
            print(
                f"{system:<9} {row['actors']:>8.0f} "
                + (f"{row.get('actors_numpy', float('nan')):>8.0f} " if numpy_column else "")
                + " ".join(f"{row[f'diffusion_{k}']:>8.0f}" for k in DIFFUSION_STEPS)
                + f" {row['speedup_vs_diffusion_20']:>9.1f}"
                + (f" {row.get('speedup_numpy_actors_vs_diffusion_20', float('nan')):>15.1f}" if numpy_column else "")
            )
    dots = report.get("stage_dots_gflops")
    if dots and "wall_seconds" in dots:
        print(
            "\nOMSD stages' own matmul shapes alone (preset, XLA, no element-wise work): "
            + ", ".join(
                f"{stage} {dots[stage]:.1f} GFLOP/s ({100 * dots[stage] / peak:.0f}% of best)"
                for stage in STAGES
                if stage in dots
            )
        )
    memory = {label: report["train"][label]["peak_memory_mib"] for label in report["train"]}
    if report.get("legacy"):
        memory["old/preset"] = report["legacy"]["preset"]["peak_memory_mib"]
    print(
        "\nPeak memory (MiB): "
        + ", ".join(
            f"{k}: {v['process_rss_mib']:.0f}" + (f" (GPU {v['gpu_mib']:.0f})" if "gpu_mib" in v else "")
            for k, v in memory.items()
        )
    )
    og_marl = report["og_marl"]
    if "skipped" in og_marl:
        print(f"OG-MARL: {og_marl['skipped']}")
    else:
        print(
            f"OG-MARL's own systems, same vault and batch size {og_marl['batch_size']} (train steps/s): "
            + ", ".join(f"{name} {row['steps_per_s']:.1f}" for name, row in og_marl["systems"].items())
        )
    print(f"Bench wall time: {report['wall_seconds']:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
