"""``python -m bench``: see :mod:`bench._cli`."""

from bench._cli import main

raise SystemExit(main())
