"""og-marl-omsd: OMSD and its BRPO baselines as OG-MARL offline systems."""

__version__ = "0.1.0"
