"""Child process entry: ``python -m bench._child '<CellSpec as JSON>' <result path>``.

Runs one cell in this fresh interpreter and writes its :class:`CellResult` as JSON.
"""

from __future__ import annotations

import json
import sys

from ._cell import run_cell
from ._harness import CellSpec


def main(argv: list[str]) -> int:
    spec = CellSpec(**json.loads(argv[0]))
    result = run_cell(spec)
    with open(argv[1], "w") as f:
        json.dump(result.to_json(), f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
