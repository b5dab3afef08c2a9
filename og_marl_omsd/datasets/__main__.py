"""Command line for the plugin's datasets.

    python -m og_marl_omsd.datasets generate <vault_config> [--datasets Medium ...] [--vault-dir vaults] [--threads 1]
    python -m og_marl_omsd.datasets describe <.vlt dir or dataset dir> [--plot actions.png] [--no-coordination]

``generate`` is resumable: rerun it after an interruption; complete datasets are skipped
and behaviour training continues from its latest checkpoint.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional


def _setup_tensorflow(threads: Optional[int]) -> None:
    """Entry-point-only side effects: TF thread pools and deterministic ops."""
    if threads:
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(threads))
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", str(threads))
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    tf.config.experimental.enable_op_determinism()


def check_generate_arguments(arguments: argparse.Namespace) -> None:
    """``generate``'s arguments, checked before anything is loaded or written.

    Raises:
        UserError: ``--threads`` below 1, an unknown vault config or dataset, or a vault
            directory that cannot be written.
    """
    from og_marl_omsd.datasets.generate import load_vault_config
    from og_marl_omsd.runner.validation import check_writable_directory
    from og_marl_omsd.support.errors import UserError

    if arguments.threads is not None and arguments.threads < 1:
        raise UserError(f"--threads must be >= 1 (got {arguments.threads}); leave it out for TensorFlow's default.")
    try:
        config = load_vault_config(arguments.vault_config)
    except FileNotFoundError as error:
        raise UserError(f"{error} Give a name from og_marl_omsd/vault_configs/ or a path to a YAML file.") from None
    defined = list(config.get("datasets") or {})
    unknown = [name for name in arguments.datasets or [] if name not in defined]
    if unknown:
        raise UserError(
            f"Vault config {config['name']} defines no dataset {', '.join(unknown)}; it defines "
            f"{', '.join(defined) or 'none'}. Nothing was written."
        )
    check_writable_directory(arguments.vault_dir, "vault directory", "--vault-dir")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m og_marl_omsd.datasets", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate", help="generate a vault config's missing datasets (resumable)")
    generate.add_argument("vault_config", help="name in vault_configs/ (e.g. 2halfcheetah) or a path to a YAML file")
    generate.add_argument("--datasets", nargs="+", default=None, help="only these datasets (default: all)")
    generate.add_argument("--vault-dir", default="vaults", help="vault root (OG-MARL's rel_dir); default ./vaults")
    generate.add_argument("--threads", type=int, default=None, help="TF intra/inter-op threads (e.g. 1)")
    describe = commands.add_parser("describe", help="return statistics and joint-action plot of datasets")
    describe.add_argument("path", help="a <scenario>.vlt directory (all its datasets) or one dataset directory")
    describe.add_argument("--plot", default=None, help="PNG path (default: <.vlt dir>/joint_actions.png)")
    describe.add_argument(
        "--no-coordination", action="store_true", help="skip the coordination need (about a minute per agent)"
    )
    describe.add_argument("--coordination-splits", type=int, default=5, help="episode splits of the estimator")
    describe.add_argument(
        "--coordination-samples", type=int, default=20_000, help="training transitions per split of the estimator"
    )
    describe.add_argument("--coordination-steps", type=int, default=3_000, help="training steps per model")
    for command in (generate, describe):
        command.add_argument("--verbose", action="store_true", help="show the libraries' log lines and warnings")
    arguments = parser.parse_args(argv)
    from og_marl_omsd.support import quiet

    quiet.configure(arguments.verbose)

    if arguments.command == "generate":
        from og_marl_omsd.datasets.generate import ensure_datasets
        from og_marl_omsd.support import provenance

        check_generate_arguments(arguments)  # before TensorFlow is loaded and anything is written
        provenance.pin()  # every dataset's metadata names the commit this process runs
        _setup_tensorflow(arguments.threads)
        location = ensure_datasets(arguments.vault_config, arguments.datasets, arguments.vault_dir)
        print(f"[datasets] complete: {', '.join(location.available())} in {os.path.abspath(location.path)}", flush=True)
        return 0
    if arguments.command == "describe":
        from og_marl_omsd.datasets.coordination import EstimatorSettings
        from og_marl_omsd.datasets.describe import describe_path

        settings = None
        if not arguments.no_coordination:
            settings = EstimatorSettings(
                splits=arguments.coordination_splits,
                train_samples=arguments.coordination_samples,
                steps=arguments.coordination_steps,
            )
        describe_path(arguments.path, plot_path=arguments.plot, coordination=settings)
        return 0
    parser.error(f"unknown command {arguments.command!r}; valid: generate, describe")
    return 2


INTERRUPTED = (
    "Interrupted. Run the same command again: complete datasets are kept and behaviour training "
    "resumes from its last checkpoint."
)


def error_message(error: Exception) -> Optional[str]:
    """The paragraph for an error the user can act on (an unknown config or dataset, bad config keys,
    a damaged path, a full or read-only disk), or ``None`` (a bug: its traceback)."""
    from og_marl_omsd.support.errors import UserError
    from og_marl_omsd.support.files import is_disk_error

    if not isinstance(
        error, (UserError, FileNotFoundError, FileExistsError, KeyError, ValueError, RuntimeError, OSError)
    ):
        return None
    if isinstance(error, OSError) and not isinstance(error, (FileNotFoundError, FileExistsError)):
        if not is_disk_error(error):
            return None
        reason = getattr(error, "strerror", error)
        return (
            f"could not write {getattr(error, 'filename', None) or ''}: {reason}. Free disk space "
            "(or fix permissions) and run the same command again; nothing partial was kept"
        )
    return error.args[0] if isinstance(error, KeyError) and error.args else str(error)


def cli(argv: Optional[List[str]] = None) -> int:
    """:func:`main` with user errors (unknown config or dataset, bad config keys, a damaged or
    unwritable path, Ctrl-C) printed as one paragraph, exit code 2 (130 for Ctrl-C); set
    ``HYDRA_FULL_ERROR=1`` to see the traceback."""
    from og_marl_omsd.support.errors import cli_entry

    return cli_entry(lambda: main(argv), INTERRUPTED, error_message)


if __name__ == "__main__":
    sys.exit(cli())
