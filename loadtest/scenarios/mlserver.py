"""`mlserver`: MLServer 1.7.1 as a peer (same bundle, V2 ModelInfer), with and without adaptive batching, each in
the two thread layouts a user could pick: one worker whose session has every core's threads, and one worker
process per core with one thread each (senti's own layout), so a ratio measures the design, not a setting."""
from __future__ import annotations

import os

from .. import peers
from ..context import Bench
from ..measure import closed_loops
from ..settings import ROOT, log
from .engine import paired_ceiling


def run(bench: Bench) -> None:
    """MLServer 1.7.1 as a peer: same bundle, same texts, V2 gRPC ModelInfer with one text per request."""
    venv = bench.args.mlserver_venv
    if not (venv / "bin" / "mlserver").exists():
        bench.results["mlserver"] = {"skipped": f"no MLServer venv at {venv}; see loadtest/mlserver/requirements.txt"}
        log(bench.results["mlserver"]["skipped"])
        return
    out = {}
    cores = os.cpu_count() or 1
    configs = [(f"mlserver-{kind}-{layout}", batching, workers, threads)
               for kind, batching in (("adaptive", {"max_batch_size": 32, "max_batch_time": 0.01}), ("no-batching", {}))
               for layout, workers, threads in ((f"1x{cores}", 1, cores), (f"{cores}x1", cores, 1))]
    for name, batching, workers, threads in configs:
        paired = paired_ceiling(bench, name) if bench.args.paired else None
        server = peers.start_mlserver(name, venv, bench.bundle, bench.out, batching, ROOT, log, workers, threads)
        try:
            entry = {"paired_ceiling": paired, "settings": batching or {"max_batch_size": 1},
                     "layout": {"parallel_workers": workers, "threads": threads}, "ready_s": round(server.ready_s, 2),
                     "load_avg_before": os.getloadavg()[0]}
            v2 = peers.v2_module(venv)
            closed_loops(name, server, entry, lambda: peers.v2_call(v2, bench.texts), bench.seconds, bench.warmup,
                         stub_factory=peers.V2Stub.factory(v2))
        finally:
            server.stop()
        out[name] = entry
        bench.results["mlserver"] = out
        bench.save()
