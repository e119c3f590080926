"""Short runs of the k6 scripts and the locust user against a live server: proof that they work, with
their own numbers (the bench's asyncio driver is the reference; these tools cost more CPU per request)."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _tool(name: str) -> str | None:
    return shutil.which(name) or (str(Path(sys.executable).parent / name)
                                  if (Path(sys.executable).parent / name).exists() else None)


def k6(target: str, texts_file: Path, out: Path, seconds: int, rate: int = 50) -> dict:
    binary = _tool("k6")
    if binary is None:
        return {"skipped": "k6 not installed (make bench installs it)"}
    summary = out / "k6-predict-summary.json"
    command = [binary, "run", "--quiet", "--no-color", "-e", f"TARGET={target}", "-e", f"TEXTS={texts_file}",
               "-e", f"RATE={rate}", "-e", f"DURATION={seconds}s", "--summary-export", str(summary),
               str(HERE / "k6" / "predict.js")]
    done = subprocess.run(command, cwd=HERE / "k6", capture_output=True, text=True, timeout=seconds + 60)
    (out / "k6.log").write_text(done.stdout + done.stderr)
    if not summary.is_file():
        return {"error": f"k6 exited {done.returncode}; see k6.log"}
    metrics = json.loads(summary.read_text())["metrics"]
    pick = {name: {k: round(v, 2) for k, v in metrics[name].items() if isinstance(v, (int, float))}
            for name in ("grpc_req_duration", "senti_queue_ms", "senti_inference_ms", "iterations",
                         "senti_batch_size") if name in metrics}
    return {"rate": rate, "seconds": seconds, "exit_code": done.returncode, "metrics": pick}


def locust(target: str, out: Path, seconds: int, users: int = 8) -> dict:
    binary = _tool("locust")
    if binary is None:
        return {"skipped": "locust not installed (make bench installs it)"}
    prefix = out / "locust"
    command = [binary, "-f", str(HERE / "locustfile.py"), "--host", target, "--headless", "-u", str(users),
               "-r", str(users), "-t", f"{seconds}s", "--csv", str(prefix), "--only-summary", "--stop-timeout", "10"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 90)
    (out / "locust.log").write_text(done.stdout + done.stderr)
    stats = Path(f"{prefix}_stats.csv")
    if not stats.is_file():
        return {"error": f"locust exited {done.returncode}; see locust.log"}
    rows = {}
    with stats.open() as fh:
        for row in csv.DictReader(fh):
            rows[f"{row['Type']} {row['Name']}"] = {
                "requests": int(row["Request Count"]), "failures": int(row["Failure Count"]),
                "rps": round(float(row["Requests/s"]), 1), "p50_ms": row["50%"], "p99_ms": row["99%"]}
    return {"users": users, "seconds": seconds, "exit_code": done.returncode, "stats": rows}


def smoke(target: str, texts: list[str], out: Path, seconds: int) -> dict:
    texts_file = out / "texts.json"
    texts_file.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    return {"k6": k6(target, texts_file, out, seconds), "locust": locust(target, out, seconds),
            "ghz": {"skipped": "ghz is not obtainable from the registries this project uses; "
                               "configs in loadtest/ghz/ are for users who have it"}}
