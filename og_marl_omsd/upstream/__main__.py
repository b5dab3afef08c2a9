"""``python -m og_marl_omsd.upstream export <og-marl checkout> [--branch NAME] [--patch FILE]``."""

import sys

from og_marl_omsd.upstream.export import main

if __name__ == "__main__":
    sys.exit(main())
