"""Datasets as flashbax vaults in OG-MARL's layout: ``<rel_dir>/<source>/<env>/<scenario>.vlt/<uid>``."""
