"""PNG plots of a bench run: throughput vs offered load, latency percentiles, batch sizes, modes side by side."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402



def _save(fig, path: Path) -> Path:
    """Writes a figure as PNG and frees it."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

def draw(results: dict, out: Path) -> list[Path]:
    """Writes the plots a run has data for; returns their paths."""
    paths = []
    sweep = results.get("sweep")
    if sweep and sweep.get("steps"):
        paths.append(_sweep(sweep, out / "sweep.png"))
    if results.get("modes") or results.get("engine"):
        paths.append(_modes(results, out / "modes.png"))
    hist = _batch_hist(results)
    if hist:
        paths.append(_batches(hist, out / "batch-sizes.png"))
    zs = results.get("zeroshot")
    if zs:
        paths.append(_zeroshot(zs, out / "zeroshot.png"))
    return paths


def _sweep(sweep: dict, path: Path) -> Path:
    steps = sweep["steps"]
    offered = [s["offered"] for s in steps]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(offered, [s["achieved"] for s in steps], "o-", label="served (batched)")
    top = max(offered + [sweep["ceiling"]]) * 1.05
    left.plot([0, top], [0, top], ":", color="grey", label="served = offered")
    left.axhline(sweep["ceiling"], color="tab:red", ls="--", label=f"raw engine ceiling {sweep['ceiling']:.0f}")
    left.set(xlabel="offered load (texts/s, constant arrivals)", ylabel="served (texts/s)",
             title="Predict: throughput vs offered load")
    left.legend(fontsize=8)
    for q, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-")):
        right.plot(offered, [s["latency_ms"].get(q) for s in steps], style, label=q)
    right.axhline(100, color="grey", ls=":", lw=1)
    right.axhline(500, color="grey", ls="--", lw=1)
    right.set_yscale("log")
    right.set(xlabel="offered load (texts/s)", ylabel="latency (ms, from scheduled send)",
              title="Predict: latency percentiles")
    right.legend(fontsize=8)
    return _save(fig, path)


def _modes(results: dict, path: Path) -> Path:
    names, values, colors = [], [], []
    for r in results.get("engine", {}).get("runs", []):
        if r["variant"] == "int8" and r["layout"] == "2x1" and r["batching"] in ("batch 1", "grouped 32"):
            names.append(f"raw engine\n{r['batching']}")
            values.append(r["texts_per_s"])
            colors.append("tab:grey")
    for name, entry in results.get("modes", {}).items():
        for c in ("c1", "c32"):
            if c in entry:
                names.append(f"{name}\n{c}")
                values.append(entry[c]["texts_per_s"])
                colors.append("tab:blue" if name == "batched" else "tab:orange" if name == "seed" else "tab:cyan")
    for name, entry in results.get("mlserver", {}).items():
        if isinstance(entry, dict) and "c32" in entry:
            for c in ("c1", "c32"):
                names.append("MLServer\n" + name.removeprefix("mlserver-") + "\n" + c)
                values.append(entry[c]["texts_per_s"])
                colors.append("tab:purple")
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names)), 4))
    bars = ax.bar(range(len(names)), values, color=colors)
    for bar, v in zip(bars, values):
        ax.text(bar.get_x() + bar.get_width() / 2, v, f"{v:.0f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set(ylabel="texts/s (one text per request, closed loop)", title="Raw engine vs server modes, one run")
    return _save(fig, path)


def _batch_hist(results: dict) -> dict:
    batched = results.get("modes", {}).get("batched", {}).get("c32")
    if batched and batched.get("batch_size_hist"):
        return {int(k): v for k, v in batched["batch_size_hist"].items()}
    steps = results.get("sweep", {}).get("steps", [])
    if steps:
        return {int(k): v for k, v in steps[-1]["batch_size_hist"].items()}
    return {}


def _batches(hist: dict, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(list(hist), list(hist.values()), color="tab:blue")
    ax.set(xlabel="batch size that served the request", ylabel="requests",
           title="Batch sizes, batched mode, concurrency 32")
    return _save(fig, path)


def _zeroshot(zs: dict, path: Path) -> Path:
    labels = sorted(zs["labels"], key=int)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([int(k) for k in labels], [zs["labels"][k]["ms_per_text"] for k in labels], "o-")
    ax.set_ylim(bottom=0)
    ax.set(xlabel="candidate labels", ylabel="ms per text (1 / throughput, c32)",
           title="ClassifyZeroShot: cost per text vs label count")
    return _save(fig, path)
