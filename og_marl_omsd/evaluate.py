"""``python -m og_marl_omsd.evaluate <run dir>``: the path users type, kept; the code lives in
:mod:`og_marl_omsd.runner.evaluate`."""

import sys

from og_marl_omsd.runner.evaluate import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
