"""`zeroshot`: ClassifyZeroShot with 2, 5, 10 and 20 labels at concurrency 32; cost per text vs label count."""
from __future__ import annotations

from ..context import Bench
from ..drivers import closed_loop, zeroshot_call
from ..measure import measured, result_of
from ..settings import log
from ..spawn import start_server

ZEROSHOT_LABELS = ["物流", "质量", "价格", "服务", "包装", "外观", "尺寸", "颜色", "味道", "电池",
                   "屏幕", "声音", "安装", "售后", "做工", "材质", "性能", "气味", "配件", "发票"]


def run(bench: Bench) -> None:
    server = start_server("zeroshot", bench.bundle, bench.out, ["--cache-size", "0"])
    out = {}
    start = 0
    try:
        for k in (2, 5, 10, 20):
            labels = ZEROSHOT_LABELS[:k]
            texts = bench.texts[start:] + bench.texts[:start]
            call = zeroshot_call(texts, labels)
            (records, window), cpu, mine = measured(server, lambda meter: closed_loop(
                server.target, call, 32, bench.seconds, bench.warmup, max_requests=200_000, meter=meter))
            entry = result_of(records, window, server, cpu, mine)
            entry["ms_per_text"] = round(1000 / max(entry["texts_per_s"], 1e-9), 2)
            entry["cpu_ms_per_text"] = round(1000 * cpu / max(1, entry["ok"]), 2)
            entry["lengths"] = bench.lengths(texts[: max(1, len(records))])
            out[str(k)] = entry
            start += len(records) + 32
            log(f"zero-shot {k} labels: {entry['texts_per_s']} texts/s, {entry['ms_per_text']} ms/text")
    finally:
        server.stop()
    base = out["2"]["texts_per_s"]
    bench.results["zeroshot"] = {"concurrency": 32, "labels": out,
                                 "slowdown_20_vs_2": round(base / max(out["20"]["texts_per_s"], 1e-9), 2)}
    bench.save()
