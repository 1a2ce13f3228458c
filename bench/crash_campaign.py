"""``python -m bench.crash_campaign``: the long versions of asyncwal's crash and fault campaigns.

The campaigns are test code and live in the test tree (``tests/campaign/``: the checker, the
workload, and the power-loss, fault, process-kill and corrupt-input drivers), where the
default test suite runs their short versions. This entry point, which the docs cite, runs
them long from a checkout, with the same commands and flags as ``python -m tests.campaign``::

    python -m bench.crash_campaign all --trials 20
    python -m bench.crash_campaign powerloss --seed 3 --at 17 --sample durable
"""

from __future__ import annotations

from tests.campaign.cli import main

__all__ = ("main",)

if __name__ == "__main__":
    raise SystemExit(main())
