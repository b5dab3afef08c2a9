"""One run of one system on one dataset: the hydra entry point (:mod:`.run`), its steps
(:mod:`.steps`), checks (:mod:`.validation`), logging and tracking, sweeps, evaluation and the
exported policy. ``python -m og_marl_omsd.run`` and ``python -m og_marl_omsd.evaluate`` keep
working through the two modules of those names at the package's top level.
"""
