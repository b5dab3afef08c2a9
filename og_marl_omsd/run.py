"""``python -m og_marl_omsd.run``: the path users type, kept; the runner lives in :mod:`og_marl_omsd.runner.run`."""

from og_marl_omsd.runner.run import cli, dataset_source, main, run

__all__ = ["cli", "dataset_source", "main", "run"]

if __name__ == "__main__":
    cli()
