"""The engine that serves now, and replacing it without a failed call (a hot reload of the bundles).

A reload loads and warms the new engine beside the old one, then swaps it in: calls that start afterwards get
the new engine, calls that already took the old one finish on it, and once the last of them has left, the old
engine finishes its queued work and is closed. A bundle that fails to load or warm leaves the old one serving.
"""
import hashlib
import logging
import threading
from collections import Counter
from contextlib import contextmanager
from typing import Callable, Iterator

from senti.model.engine import Engine

log = logging.getLogger(__name__)


def bundle_version(engine: Engine) -> str:
    """Which bundles an engine serves: name@sha256(bundle.json)[:12] of each, comma-separated."""
    versions = []
    for model in engine.models:
        digest = hashlib.sha256((model.bundle.path / "bundle.json").read_bytes()).hexdigest()[:12]
        versions.append(f"{model.bundle.name}@{digest}")
    return ",".join(versions)


class EngineSlot:
    """Holds the serving engine; `use()` lends it to one call, `swap()` replaces it."""

    def __init__(self, engine: Engine):
        self._engine = engine
        self.version = bundle_version(engine) if hasattr(engine, "models") else ""
        self._users: Counter = Counter()
        self._cond = threading.Condition()
        self.streams_open = True  # False once shutdown drains the streams: their new items are refused

    def close_streams(self) -> None:
        """Shutdown: open streams (gRPC and HTTP feeds) get UNAVAILABLE for new items from now on; unary calls
        a handler already holds are still served (gRPC hands out calls it accepted before `stop` a little late)."""
        self.streams_open = False

    @property
    def current(self) -> Engine:
        """The engine new calls get."""
        return self._engine

    @contextmanager
    def use(self) -> Iterator[Engine]:
        """The current engine, held for this call: a swap waits for the call to leave before closing it."""
        with self._cond:
            engine = self._engine
            self._users[id(engine)] += 1
        try:
            yield engine
        finally:
            with self._cond:
                self._users[id(engine)] -= 1
                self._cond.notify_all()

    def swap(self, engine: Engine, wait_s: float) -> Engine:
        """Puts `engine` in; returns the old one once no call holds it (or after `wait_s`)."""
        with self._cond:
            old, self._engine = self._engine, engine
            self.version = bundle_version(engine)
            if not self._cond.wait_for(lambda: self._users[id(old)] <= 0, timeout=wait_s):
                log.warning("reload: calls still hold the old engine after %.0f s; closing it anyway", wait_s)
            del self._users[id(old)]
        return old


def as_slot(engine_or_slot) -> EngineSlot:
    """An EngineSlot for an engine (or the slot itself)."""
    return engine_or_slot if isinstance(engine_or_slot, EngineSlot) else EngineSlot(engine_or_slot)


class Reloader:
    """Loads, warms and swaps in new engines, one reload at a time."""

    def __init__(self, slot: EngineSlot, load: Callable[..., Engine], wait_s: float, on_result=None,
                 prepare: Callable[[Engine], object] | None = None):
        self.slot = slot
        self.load = load
        self.wait_s = wait_s
        self.on_result = on_result or (lambda ok: None)
        self.prepare = prepare or (lambda engine: None)  # after warm-up, before the swap (e.g. classifier caches)
        self._lock = threading.Lock()

    def reload(self, bundle_paths=None) -> bool:
        """Replaces the serving engine with one loaded from `bundle_paths` (default: the configured ones);
        False (and the old engine keeps serving) when the new one fails to load or warm."""
        with self._lock:
            try:
                engine = self.load(bundle_paths)
            except Exception:  # noqa: BLE001 - any failure leaves the old bundle serving
                log.exception("reload failed: the new bundle did not load; the old one keeps serving")
                self.on_result(False)
                return False
            try:
                warm_s = engine.warm_up()
                self.prepare(engine)
            except Exception:  # noqa: BLE001
                log.exception("reload failed: the new bundle did not warm up; the old one keeps serving")
                engine.close()
                self.on_result(False)
                return False
            before = self.slot.version
            old = self.slot.swap(engine, self.wait_s)
            old.close()  # its queued work finishes first
            log.info("reloaded", extra={"from_version": before, "version": self.slot.version,
                                        "warm_up_s": round(warm_s, 3)})
            self.on_result(True)
            return True
