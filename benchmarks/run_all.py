"""Run every benchmark script in this folder (``make bench``); each updates docs/benchmarks.md."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    scripts = sorted(p for p in HERE.glob("*.py") if p.name not in {"run_all.py", "__init__.py"} and not p.name.startswith("_"))
    failed = []
    for s in scripts:
        t = time.time()
        print(f"== {s.name}", flush=True)
        rc = subprocess.call([sys.executable, str(s)], cwd=HERE.parent)
        print(f"== {s.name}: exit {rc} in {time.time() - t:.0f} s", flush=True)
        if rc:
            failed.append(s.name)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
