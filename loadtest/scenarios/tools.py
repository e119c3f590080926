"""`tools`: short runs of the k6 script and the locust user against a live batched server."""
from __future__ import annotations

from .. import tools
from ..context import Bench
from ..spawn import start_server


def run(bench: Bench) -> None:
    """Short runs of the k6 script and the locust user, to prove they work against a live server."""
    server = start_server("tools", bench.bundle, bench.out, ["--cache-size", "0"])
    try:
        bench.results["tools"] = tools.smoke(server.target, bench.texts[:2000], bench.out,
                                             seconds=3 if bench.quick else 8)
    finally:
        server.stop()
    bench.save()
