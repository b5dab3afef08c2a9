"""The systems: the shared actor stage (actors.py), the score-regularised pipeline on it (base.py),
OMSD, the BRPO baselines and BC (each file holds only what makes its system different), and each
hyperparameter's one declaration (stage_configs.py)."""
