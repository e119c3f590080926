"""Shared fixtures: tiny bundles built in the test session, and real servers on port 0."""
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from senti.client import SentiClient
from senti.model.engine import Engine
from senti.server.app import Running, start_server
from senti.server.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BUNDLE = Path(os.environ.get("SENTI_TEST_DEFAULT_BUNDLE", ROOT / "bundles" / "e5-small"))


@contextmanager
def running_server(bundle: Path, zeroshot_bundle: Path | None = None, warm: bool = True,
                   **overrides) -> Iterator[tuple[Running, SentiClient]]:
    """A real server on 127.0.0.1:0 with a real channel to it; stopped on exit."""
    overrides.setdefault("http_port", -1)  # tests that need HTTP ask for port 0
    settings = Settings(host="127.0.0.1", port=0, bundle=bundle, zeroshot_bundle=zeroshot_bundle, **overrides)
    engine = Engine.load(settings.bundle_paths(), settings.engine_config())
    running = start_server(settings, engine)
    if warm:
        running.warm_up()
        running.set_serving(True)
    client = SentiClient(f"127.0.0.1:{running.port}", timeout=30)
    try:
        yield running, client
    finally:
        client.close()
        running.stop(0)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A tiny embedding bundle (random 2-layer encoder, fitted head) built in seconds."""
    from tests.tiny_bundles import build_tiny_embedding_bundle
    return build_tiny_embedding_bundle(tmp_path_factory.mktemp("tiny") / "embedding")


@pytest.fixture(scope="module")
def tiny_server(tiny_bundle) -> Iterator[tuple[Running, SentiClient]]:
    """A real server over the tiny bundle, shared by a test module."""
    with running_server(tiny_bundle, max_texts_per_request=8, max_labels_per_request=5, max_chars_per_text=2000,
                        max_stream_in_flight=4, max_examples_per_label=3, max_examples_per_request=5) as pair:
        yield pair


@pytest.fixture(scope="session")
def default_bundle() -> Path:
    """The real default bundle; `make test` builds it first (make model)."""
    if not (DEFAULT_BUNDLE / "bundle.json").is_file():
        pytest.fail(f"the default bundle is missing at {DEFAULT_BUNDLE}: run `make model` (make test does)")
    return DEFAULT_BUNDLE
