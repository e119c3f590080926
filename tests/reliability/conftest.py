"""Servers for the reliability tests: real servers on port 0 with metrics wired to the batcher, and helpers."""
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import grpc
import pytest

from senti.client import SentiClient
from senti.model.engine import Engine
from senti.server.app import Running, start_server
from senti.server.metrics import Metrics
from senti.server.settings import Settings



@contextmanager
def serving(bundle: Path, *, warm: bool = True, tracer_provider=None, channel_credentials=None,
            **overrides) -> Iterator[tuple[Running, SentiClient]]:
    """A real server on 127.0.0.1:0 whose metrics see every batch, with a client; stopped on exit."""
    overrides.setdefault("http_port", -1)  # tests that need HTTP ask for port 0
    settings = Settings(host="127.0.0.1", port=0, bundle=bundle, metrics_port=-1, **overrides)
    metrics = Metrics()
    engine = Engine.load(settings.bundle_paths(), settings.engine_config(), observer=metrics.observe_batch)
    running = start_server(settings, engine, metrics, tracer_provider=tracer_provider)
    if warm:
        engine.warm_up()
        running.set_serving(True)
    target = f"127.0.0.1:{running.port}"
    channel = (grpc.secure_channel(target, channel_credentials, options=[("grpc.ssl_target_name_override",
                                                                          "localhost")])
               if channel_credentials is not None else grpc.insecure_channel(target))
    client = SentiClient(target, timeout=30, channel=channel)
    try:
        yield running, client
    finally:
        client.close()
        running.stop(0)


def sample(metrics: Metrics, name: str, labels: dict | None = None) -> float:
    """The current value of one sample of the server's registry (0 when absent)."""
    value = metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value



@pytest.fixture(scope="module")
def metered(tiny_bundle) -> Iterator[tuple[Running, SentiClient]]:
    """A shared server over the tiny bundle whose metrics see the batcher."""
    with serving(tiny_bundle, max_texts_per_request=8, max_labels_per_request=5, max_chars_per_text=2000,
                 max_stream_in_flight=4) as pair:
        yield pair
