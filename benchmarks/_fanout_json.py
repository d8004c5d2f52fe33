"""``fanout_scale.measure`` for run_all.py (issue 13, rows 6 and 7), in a process of its own.

Run: ``python benchmarks/_fanout_json.py [--rounds N] [--sizes 1000,10000] [--offset K]``.
Each round measures lamina, lamina with ``gc.freeze()`` once built, and the hand-written
gather at every size, in an order that rotates from round to round; prints one JSON object:
per contender and size, the per-round (µs per endpoint, KB per endpoint of the run's
peak, KB per endpoint the built orchestrator holds).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fanout_scale import MAX_CONCURRENT, gather_run, lamina_run, measure

CONTENDERS = ("lamina", "lamina, gc.freeze()", "gather")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--offset", type=int, default=0)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    out: dict[str, dict[str, list[list[float]]]] = {
        c: {str(n): [] for n in sizes} for c in CONTENDERS
    }
    for name in CONTENDERS:  # first-use costs (imports, memos) out of the first sample
        measure(gather_run if name == "gather" else lamina_run, 200, freeze="freeze" in name)
    for i in range(args.offset, args.offset + args.rounds):
        k = i % len(CONTENDERS)
        for n in sizes:
            for name in CONTENDERS[k:] + CONTENDERS[:k]:
                make = gather_run if name == "gather" else lamina_run
                out[name][str(n)].append(list(measure(make, n, freeze="freeze" in name)))
    print(
        json.dumps(
            {"python": platform.python_version(), "max_concurrent": MAX_CONCURRENT, "samples": out}
        )
    )


if __name__ == "__main__":
    main()
