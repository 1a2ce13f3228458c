"""``python -m asyncwal``: the command line (see asyncwal.cli)."""

import sys

from .cli import main

sys.exit(main())
