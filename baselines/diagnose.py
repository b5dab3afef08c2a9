"""Check the pretrained parts of finished runs on their own (og_marl_omsd/comparison/diagnose.py).

    python baselines/diagnose.py RUN_DIR [RUN_DIR ...] [--out diagnose.json]

For each run: its critic's Q at dataset states and actions against the discounted return
that followed (correlation, mean gap), and its behaviour model's sampled joint actions at
held-out dataset states against the dataset's (the comparison's joint-action support test,
per-dimension spread, share of saturated actions). Runs on one dataset share one support
estimate. Nothing is trained when the runs' pretrained cache entries are there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", help="finished runs of score-regularised systems")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--denoising-steps", type=int, default=20, help="DDIM steps of the behaviour samples")
    parser.add_argument("--horizon", type=int, default=500, help="only steps with this many steps left in the episode")
    args = parser.parse_args(argv)
    from og_marl_omsd.comparison.diagnose import diagnose_run

    results: List[Dict[str, Any]] = []
    for run_dir in args.run_dirs:
        results.append(diagnose_run(run_dir, denoising_steps=args.denoising_steps, horizon=args.horizon))
        print(_line(results[-1]), flush=True)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0


def _line(result: Dict[str, Any]) -> str:
    critic, behaviour = result["critic"], result["behaviour"]
    return (
        f"{result['run_dir']}\n  critic ({result['critic_kind']}): corr(Q, return) {critic['correlation']:.3f} | "
        f"mean Q {critic['mean_q']:.2f} vs return {critic['mean_return']:.2f} (std {critic['std_return']:.2f}) | "
        f"{critic['pairs']} pairs\n  behaviour ({result['factorisation']}): OOD share of samples "
        f"{behaviour['ood_share_samples']:.1%} (dataset's own {behaviour['ood_share_dataset']:.1%}) | spread "
        f"{behaviour['std_samples']:.3f} vs {behaviour['std_dataset']:.3f} | saturated "
        f"{behaviour['saturated_samples']:.1%} vs {behaviour['saturated_dataset']:.1%}"
        + (
            ""
            if result["same_parts_as_run"]
            else "\n  note: the cache's keys changed since this run; checked the current code's parts"
        )
    )


if __name__ == "__main__":
    sys.exit(main())
