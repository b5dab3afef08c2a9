"""The upstream contribution to OG-MARL, built from this plugin.

- :mod:`og_marl_omsd.upstream.og_marl_systems`: OG-MARL's own offline TF2 systems by name,
  with configs built from their YAML defaults (read from OG-MARL's source, never copied).
- :mod:`og_marl_omsd.upstream.runner`: the runner for systems without a pretraining stage
  (OG-MARL's ``BaseOfflineSystem`` subclasses); ``og_marl_omsd.runner.run`` uses it for them, and it
  is the body of the ``og_marl/run.py`` that the export writes.
- :mod:`og_marl_omsd.upstream.export`: ``python -m og_marl_omsd.upstream export <og-marl
  checkout>`` adds ``og_marl/run.py``, its configs, the ``og_marl.systems`` registrations and
  the runner's tests to an OG-MARL working tree as one commit on a new branch.
"""
