"""asyncwal's crash and fault campaigns: the evidence behind docs/durability.md.

The same code runs short in the default test suite (tests/test_powerloss.py,
test_crash_process.py, test_faults_matrix.py, test_corrupt_input.py) and long from the
command line (``python -m bench.crash_campaign all``, see :mod:`tests.campaign.cli`).

:mod:`~tests.campaign.checker`
    what a reopened log must show, given what was acknowledged
:mod:`~tests.campaign.workload`
    the seeded in-process workload and its record of acknowledgements
:mod:`~tests.campaign.powerloss`, :mod:`~.faults`, :mod:`~.kill`, :mod:`~.corrupt`
    the four campaigns (power cuts at every crash point, injected faults, SIGKILLed writer
    processes, damaged logs)
:mod:`~tests.campaign.broken`
    deliberately broken disks that the checker must catch

They live in the test tree, not in :mod:`asyncwal.testing`: the checker encodes asyncwal's own
contract and knows its on-disk format, so its shape follows the engine's; an application
checks its own promises with a few lines over :meth:`asyncwal.testing.PowerLossFileOps.states`
(docs/testing.md shows how).
"""

from __future__ import annotations

import os
from typing import Final

__all__ = ("LOG_DIR", "MODES", "campaign_trials")

#: Where the in-memory campaigns put their log.
LOG_DIR: Final = "/crash/wal"
#: The sync modes, each campaign runs in all of them.
MODES: Final = ("sync", "batch", "none")


def campaign_trials(markexpr: str, default: int) -> int | None:
    """Trials for a long campaign test, or None if the long campaigns are not enabled.

    Enabled by ``pytest -m campaign`` (a marker expression naming ``campaign`` without
    ``not``) or by the environment variable ``ASYNCWAL_CAMPAIGN_TRIALS`` (the number of
    trials; it also enables them).
    """
    env = os.environ.get("ASYNCWAL_CAMPAIGN_TRIALS")
    if env:
        return int(env)
    if "campaign" in markexpr and "not campaign" not in markexpr:
        return default
    return None
