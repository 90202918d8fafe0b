"""`make bench`: runs every bench/bench_*.py (or those named on the command line) and prints
their ratios against the bare peer measured in the same run."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import bench


def main(argv: list[str]) -> int:
    names = argv or sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))
    failed = 0
    for name in names:
        mod = importlib.import_module(f"bench.{name}")
        print(f"\n=== {name}: {(mod.__doc__ or '').strip().splitlines()[0] if mod.__doc__ else ''}", flush=True)
        t0 = time.time()
        ok = mod.run()
        print(f"=== {name}: {'PASS' if ok else 'FAIL'} ({time.time() - t0:.1f}s)", flush=True)
        failed += 0 if ok else 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
