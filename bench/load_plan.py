"""Load and plan the real instruction corpus N times; print files per second.

    python bench/load_plan.py [--workers-dir DIR] [--repeat 20] [--json]

Target: the whole corpus (226 files) loaded and planned in under 1 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestration.loader import load_workers  # noqa: E402
from orchestration.planner import plan  # noqa: E402

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpora" / "wingman-workers"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers-dir", default=str(CORPUS))
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    folder = Path(args.workers_dir)
    if not folder.is_dir():
        print(f"load_plan: no corpus at {folder}; pass --workers-dir", file=sys.stderr)
        return 0
    timings = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        loaded = load_workers(folder)
        the_plan = plan(loaded)
        timings.append(time.perf_counter() - started)
    files = loaded.files
    result = {
        "files": files,
        "planned": len(the_plan.workers),
        "repeat": args.repeat,
        "best_s": round(min(timings), 4),
        "median_s": round(statistics.median(timings), 4),
        "files_per_s": round(files / statistics.median(timings), 1),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"load+plan: {files} files, {result['planned']} planned; median {result['median_s']:.3f}s "
              f"(best {result['best_s']:.3f}s) over {args.repeat} runs = {result['files_per_s']:.0f} files/s "
              f"(target: whole corpus < 1 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
