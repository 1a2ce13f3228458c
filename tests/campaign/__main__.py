"""``python -m tests.campaign``: the same command line as ``python -m bench.crash_campaign``."""

from tests.campaign.cli import main

raise SystemExit(main())
