"""The plugin's own equivalents of the OG-MARL pieces a system needs.

Used when OG-MARL is not importable (see :mod:`og_marl_omsd.host`). Each mirrors the
signature and behaviour of its OG-MARL counterpart so systems run unchanged on both.
"""
