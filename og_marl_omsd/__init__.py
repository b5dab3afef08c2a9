"""og-marl-omsd: OMSD and its BRPO baselines as OG-MARL offline systems."""

__version__ = "0.1.0"

import os as _os

# JAX only serves the host replay buffer; keep it off the accelerator TF trains on.
_os.environ.setdefault("JAX_PLATFORMS", "cpu")
