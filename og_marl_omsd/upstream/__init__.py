"""The upstream contribution to OG-MARL, built from this plugin.

- :mod:`og_marl_omsd.upstream.og_marl_systems`: OG-MARL's own offline TF2 systems by name,
  with configs built from their YAML defaults (read from OG-MARL's source, never copied).
- :mod:`og_marl_omsd.upstream.og_marl_run`: OG-MARL's ``og_marl/run.py``, copied whole by the export
  (its HOST block swapped, the plugin's names renamed). The plugin's modules import its
  definitions from it: :class:`UserError`, the atomic file writes, the run schema, checks and
  directory, marl-eval names and JSON, the entry-point registry and the runner of systems
  without a pretraining stage (OG-MARL's ``BaseOfflineSystem`` subclasses). It imports nothing
  of the plugin but, in its HOST block at call time, the host seam (``.importlinter``).
- :mod:`og_marl_omsd.upstream.export`: ``python -m og_marl_omsd.upstream export <og-marl
  checkout>`` adds ``og_marl/run.py``, its configs, the ``og_marl.systems`` registrations and
  the runner's tests to an OG-MARL working tree as one commit on a new branch.
"""
