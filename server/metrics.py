"""Prometheus metrics of one server, in a registry of its own (several servers can live in one process).

Request counts by RPC and status code, latency by RPC, per-phase latency from the timing every response
carries (tokenize, queue, inference, total), batch size and batch inference time from the batcher's events,
queue depth, in-flight requests and streams, cache hits and misses, skipped work (cancelled, deadline) and
model info. Engine-side counters are read at scrape time, so serving pays nothing for them.
"""
import logging
from typing import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from senti.model.batcher import BatchEvent

log = logging.getLogger(__name__)

# Seconds: from a cache hit (tens of microseconds) to a request that waited a long queue.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
PHASES = ("tokenize", "queue", "inference", "total")


class Metrics:
    """The server's metrics; the interceptor and the batcher's observer feed them."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter("senti_requests", "RPCs finished, by method, gRPC status code and transport",
                                ["rpc", "code", "transport"], registry=r)
        self.latency = Histogram("senti_request_duration_seconds", "Wall time of an RPC inside the server, by "
                                 "method and transport", ["rpc", "transport"], buckets=LATENCY_BUCKETS, registry=r)
        self.phase = Histogram("senti_phase_duration_seconds",
                               "Time per phase of one request (unary: summed over its texts) or stream item, "
                               "from the timing metadata of the response", ["rpc", "phase"],
                               buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("senti_batch_size", "Items per model forward pass", buckets=BATCH_BUCKETS,
                                    registry=r)
        self.batch_inference = Histogram("senti_batch_inference_seconds", "Wall time of one model forward pass",
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.batch_padded_tokens = Counter("senti_batch_padded_tokens", "Tokens run, padding included",
                                           registry=r)
        self.batch_real_tokens = Counter("senti_batch_real_tokens", "Tokens run, padding excluded", registry=r)
        self.in_flight = Gauge("senti_in_flight_requests", "RPCs being handled now (streams included), by method "
                               "and transport", ["rpc", "transport"], registry=r)
        self.reloads = Counter("senti_reloads", "Hot reloads of the bundles (SIGHUP), by result: ok or failed",
                               ["result"], registry=r)
        self.classifier_reloads = Counter("senti_classifier_reloads", "Reloads of the classifiers file (it changed, "
                                          "or SIGHUP), by result: ok or failed", ["result"], registry=r)
        self.classifiers = Gauge("senti_classifiers", "Classifiers registered by name (--classifiers)", registry=r)
        self.in_flight_streams = Gauge("senti_in_flight_streams", "PredictStream calls open now", registry=r)
        self.stream_items = Counter("senti_stream_items", "PredictStream items answered, by status code",
                                    ["code"], registry=r)
        self.rejected = Counter("senti_rejected", "RPCs refused before reaching a handler, by reason "
                                "(concurrency, rate_limit, unauthenticated)", ["reason"], registry=r)
        self.cache_hits_in_responses = Counter("senti_response_cache_hits",
                                               "Items answered from the result cache (from response metadata)",
                                               registry=r)

    def bind_engine(self, slot, execution_mode: str, version: str) -> None:
        """Exposes the serving engine's own counters (queue depth, caches, skipped work) and model info at scrape
        time; `slot` is the server's EngineSlot, so a reload's new engine is what the next scrape reads."""
        self.registry.register(_EngineCollector(slot, execution_mode, version))

    def observe_batch(self, event: BatchEvent) -> None:
        """The batcher's observer: one call per forward pass."""
        self.batch_size.observe(event.size)
        self.batch_inference.observe(event.inference_s)
        self.batch_padded_tokens.inc(event.padded_tokens)
        self.batch_real_tokens.inc(event.real_tokens)

    def observe_timing(self, rpc: str, metadata) -> None:
        """Phase times from a response's senti.v1.Metadata (microseconds)."""
        for phase in PHASES:
            value = getattr(metadata, f"{phase}_us")
            if value or phase == "total":
                self.phase.labels(rpc, phase).observe(value / 1e6)
        if metadata.cache_hits:
            self.cache_hits_in_responses.inc(metadata.cache_hits)


class _EngineCollector(Collector):
    """Reads the engine's counters when Prometheus scrapes."""

    def __init__(self, slot, execution_mode: str, version: str):
        self.slot = slot
        self.execution_mode = execution_mode
        self.version = version

    def collect(self) -> Iterable:
        engine = self.slot.current
        yield GaugeMetricFamily("senti_queue_depth", "Items waiting for a batch worker", value=engine.queue_depth)
        yield GaugeMetricFamily("senti_ready", "1 after warm-up and before draining", value=int(engine.ready))
        hits = CounterMetricFamily("senti_cache_hits", "Result cache hits", labels=["model"])
        misses = CounterMetricFamily("senti_cache_misses", "Result cache misses", labels=["model"])
        entries = GaugeMetricFamily("senti_cache_entries", "Results held in the cache", labels=["model"])
        skipped = CounterMetricFamily("senti_skipped_items",
                                      "Queued items dropped before inference: caller cancelled or deadline passed",
                                      labels=["model", "reason"])
        batches = CounterMetricFamily("senti_batches", "Model forward passes run", labels=["model"])
        solo = CounterMetricFamily("senti_solo_batches", "Forward passes of one lone item on the solo session "
                                   "(every core's threads; included in senti_batches)", labels=["model"])
        items = CounterMetricFamily("senti_batch_items", "Items run through the model", labels=["model"])
        failed = CounterMetricFamily("senti_failed_batches", "Forward passes that raised", labels=["model"])
        info = InfoMetricFamily("senti_model", "Loaded model bundles",
                                labels=["name", "kind", "backend", "quantization", "max_tokens", "tasks",
                                        "execution_mode", "version", "bundle_version"])
        descriptions = {d.name: d for d in engine.describe()}
        for model in engine.models:
            name = model.bundle.name
            hits.add_metric([name], model.cache.hits)
            misses.add_metric([name], model.cache.misses)
            entries.add_metric([name], len(model.cache))
            stats = model.executor.stats
            skipped.add_metric([name, "cancelled"], stats.skipped_cancelled)
            skipped.add_metric([name, "deadline"], stats.skipped_deadline)
            batches.add_metric([name], stats.batches)
            solo.add_metric([name], stats.solo_batches)
            items.add_metric([name], stats.items)
            failed.add_metric([name], stats.failed_batches)
            d = descriptions.get(name)
            if d is not None:
                info.add_metric([d.name, d.kind, d.backend, d.quantization, str(d.max_tokens), ",".join(d.tasks),
                                 self.execution_mode, self.version, self.slot.version], {})
        yield from (hits, misses, entries, skipped, batches, solo, items, failed, info)


def serve_http(metrics: Metrics, host: str, port: int):
    """Serves /metrics over HTTP on host:port (0 = any free port); returns (server, bound port)."""
    server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    return server, server.server_address[1]
