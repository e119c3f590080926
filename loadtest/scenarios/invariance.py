"""`invariance`: one text, one score. Each text is sent alone to an idle server (so it runs by itself, on the solo
session), then again one text per request at concurrency 32 (so it shares length-grouped batches with other
traffic); reports the largest |score difference| over the texts and how many were batched with others."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc

from senti.v1 import senti_pb2 as pb
from senti.v1 import senti_pb2_grpc

from ..context import Bench
from ..settings import log
from ..spawn import start_server

CONCURRENCY = 32


def _predict(stub, text: str) -> tuple[list[float], int]:
    """Scores of one text in the model's label order, and the size of the batch that served it."""
    response = stub.Predict(pb.PredictRequest(texts=[text]), timeout=60)
    return [s.score for s in response.predictions[0].scores], response.metadata.batch_size


def compare(target: str, texts: list[str]) -> dict:
    """Scores alone vs under concurrent traffic, on the server at `target` (its result cache must be off)."""
    with grpc.insecure_channel(target) as channel:
        stub = senti_pb2_grpc.SentiServiceStub(channel)
        alone = [_predict(stub, text) for text in texts]
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            mixed = list(pool.map(lambda text: _predict(stub, text), texts))
    differences = [max(abs(a - b) for a, b in zip(one[0], other[0], strict=True))
                   for one, other in zip(alone, mixed, strict=True)]
    return {"texts": len(texts), "max_abs_score_difference": max(differences),
            "texts_differing": sum(d > 0 for d in differences),
            "alone_largest_batch": max(size for _, size in alone),
            "batched_with_others": sum(size > 1 for _, size in mixed),
            "mixed_mean_batch": round(sum(size for _, size in mixed) / len(mixed), 2)}


def run(bench: Bench) -> None:
    texts = bench.texts[: 300 if bench.quick else 1000]
    server = start_server("invariance", bench.bundle, bench.out, ["--cache-size", "0", "--max-queue-wait-ms", "60000"])
    try:
        out = compare(server.target, texts)
    finally:
        server.stop()
    log(f"invariance: max |score difference| {out['max_abs_score_difference']:.3g} over {out['texts']} texts "
        f"({out['batched_with_others']} batched with others)")
    bench.results["invariance"] = out
    bench.save()
