"""The raw engine (and its variants) in a subprocess of its own: the ceiling every server is quoted against."""
from __future__ import annotations

import json
import subprocess
import sys

from ..context import Bench
from ..settings import RESULTS, ROOT, log


def run(bench: Bench, variants: bool) -> None:
    """`engine` (and `variants`): loadtest.engines on a sample of the texts, into results['engine']."""
    sample = bench.texts[: 600 if bench.quick else 1500]
    path = bench.out / "engine-texts.json"
    path.write_text(json.dumps(sample, ensure_ascii=False), encoding="utf-8")
    out = bench.out / "engine.json"
    command = [sys.executable, "-m", "loadtest.engines", "--bundle", str(bench.bundle), "--texts", str(path),
               "--limit", "60", "--out", str(out),
               "--cache-dir", str(RESULTS / "variants")]
    if variants:
        command.append("--variants")
    log(f"raw engine{' + variants' if variants else ''} on {len(sample)} texts (subprocess)")
    with open(bench.out / "engine.log", "wb") as sink:
        subprocess.run(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, check=True, timeout=900)
    engine = json.loads(out.read_text(encoding="utf-8"))
    engine["lengths"] = bench.lengths(sample)
    bench.results["engine"] = engine


def _paired_run(bench: Bench, tag: str, flag: str, limit_s: int) -> dict:
    """One raw-engine run (`flag`: --ceiling-only or --batch1-only) on the first 600 texts, in a subprocess."""
    path = bench.out / "ceiling-texts.json"
    if not path.exists():
        path.write_text(json.dumps(bench.texts[:600], ensure_ascii=False), encoding="utf-8")
    out = bench.out / f"{flag.strip('-')}-{tag}.json"
    subprocess.run([sys.executable, "-m", "loadtest.engines", "--bundle", str(bench.bundle), "--texts", str(path),
                    "--out", str(out), flag, "--limit", str(limit_s)], cwd=ROOT, check=True, timeout=120,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(out.read_text(encoding="utf-8"))["runs"][0]


def paired_ceiling(bench: Bench, tag: str) -> float:
    """The raw ceiling measured again right before a server scenario (600 texts, a few seconds): on a shared
    machine the load of other work drifts, and a ratio to an adjacent measurement drifts much less."""
    value = _paired_run(bench, tag, "--ceiling-only", 30)["texts_per_s"]
    log(f"paired ceiling before {tag}: {value} texts/s")
    return value


def paired_batch1(bench: Bench, tag: str) -> float:
    """The raw engine's batch-1 latency p50 (ms; one session on every core, as the solo session runs) on the
    texts a c1 loop sends first, right before it: the reference of a lone request, paired as the ceiling is."""
    run = _paired_run(bench, tag, "--batch1-only", 60)
    value = run["batch_latency_ms"]["p50"]
    # a pass cut short ran the costliest texts only (costliest first): its p50 would flatter the server
    cut = "" if run["complete"] else f" WARNING: only {run['texts']} of 600 texts in time, p50 biased long"
    log(f"paired raw batch-1 p50 before {tag}: {value} ms{cut}")
    return value


def ceiling(bench: Bench) -> float:
    """This run's ceiling (int8, grouped 32) if the engine scenario ran, else --ceiling."""
    runs = bench.results.get("engine", {}).get("runs", [])
    grouped = [r["texts_per_s"] for r in runs if r["variant"] == "int8" and r["batching"] == "grouped 32"]
    return max(grouped, default=bench.args.ceiling)
