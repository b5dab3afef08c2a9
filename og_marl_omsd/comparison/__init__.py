"""Side-by-side comparison of systems over datasets, seeds and a beta grid.

:mod:`~og_marl_omsd.comparison.report` turns finished runs into the beta choice, the table
and marl-eval JSON; :mod:`~og_marl_omsd.comparison.plots` draws the figures;
:mod:`~og_marl_omsd.comparison.ood` measures how often joint actions leave the dataset's
support. ``baselines/compare.py`` runs the jobs through the runner and calls these.
"""
