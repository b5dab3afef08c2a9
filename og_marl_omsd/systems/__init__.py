"""OMSD and the BRPO baselines; each file holds only what makes its system different."""
