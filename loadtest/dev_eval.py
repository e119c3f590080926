"""Measures a built bundle on the shared dev files through the real server (`senti eval`); training never reads it.

    python -m loadtest.dev_eval --bundle bundles/e5-small [--record]

Starts `senti-server` on 127.0.0.1 with the bundle, runs `senti eval --json` on
../shared/data/sentiment_dev_eprstmt.jsonl and ../shared/data/zeroshot_dev_thucnews_titles.jsonl, stops the
server, prints the reports and, with --record, writes them to bundle.json under `dev_eval` (a key no build
step reads: the dev files measure generalisation and are never used to train or tune).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from loadtest.serverproc import server_process

DEV_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEV_FILES = ("sentiment_dev_eprstmt.jsonl", "zeroshot_dev_thucnews_titles.jsonl")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, default=Path("bundles/e5-small"))
    ap.add_argument("--data", type=Path, default=DEV_DIR)
    ap.add_argument("--record", action="store_true", help="write the results to bundle.json under dev_eval")
    args = ap.parse_args(argv)
    files = [args.data / name for name in DEV_FILES if (args.data / name).is_file()]
    if not files:
        print(f"no dev files under {args.data}", file=sys.stderr)
        return 1
    bindir = Path(sys.executable).parent
    results = {}
    with server_process(args.bundle, "--log-level", "INFO") as (_, port):
        for path in files:
            out = subprocess.run([str(bindir / "senti"), "--target", f"127.0.0.1:{port}", "eval", str(path),
                                  "--json"], capture_output=True, text=True, timeout=900)
            if out.returncode != 0:
                raise RuntimeError(f"senti eval failed on {path}: {out.stderr[-2000:]}")
            report = json.loads(out.stdout)
            results[path.name] = report
            print(f"{path.name}: {report['task']} accuracy {report['accuracy']:.4f} (n={report['n']}) "
                  f"confusion (gold -> predicted) {json.dumps(report['confusion'], ensure_ascii=False)}", flush=True)
    if args.record:
        meta_file = args.bundle / "bundle.json"
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        meta["dev_eval"] = {"measured_with": "senti eval (senti-server, this bundle)",
                            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": results}
        meta_file.write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
