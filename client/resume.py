"""What a resumable stream needs: the items sent and not yet answered, and when a broken stream is reopened.

A PredictStream that breaks (its server was killed or drained, the network was cut) ends with UNAVAILABLE.
The streaming helpers then open a new stream (the channel's round_robin picks a replica that is up) and resend
every item that was sent but not answered, then go on with the caller's items: the caller sees every item
answered exactly once.

Why no item is lost or sent twice: each stream takes items from the caller's iterator one at a time under a
source lock, and records each as pending (or, once that stream has ended, hands it over in `carry` to the
next stream) under the pending lock; ending a stream takes only the pending lock, so a caller's iterator that
blocks (a live feed) never holds up the answers or the reconnect.
"""
import threading
from collections import OrderedDict, deque

import grpc

RESUMABLE = frozenset({grpc.StatusCode.UNAVAILABLE})


class Pending:
    """Items sent on a stream and not yet answered, oldest first (an id may repeat: each is answered once)."""

    def __init__(self):
        self.lock = threading.Lock()
        self._texts: OrderedDict[str, deque[str]] = OrderedDict()
        self.count = 0
        self.carry: deque[tuple[str, str]] = deque()  # taken by an ended stream, not sent: the next one sends it

    def add(self, item_id: str, text: str) -> None:
        """Records an item about to be sent (call with `lock` held)."""
        self._texts.setdefault(item_id, deque()).append(text)
        self.count += 1

    def answered(self, item_id: str) -> None:
        """Forgets one item of this id: its answer arrived."""
        with self.lock:
            texts = self._texts.get(item_id)
            if texts:
                texts.popleft()
                self.count -= 1
                if not texts:
                    del self._texts[item_id]

    def items(self) -> list[tuple[str, str]]:
        """Every pending (id, text), oldest first (call with `lock` held)."""
        return [(item_id, text) for item_id, texts in self._texts.items() for text in texts]


_DONE = object()


class Attempt:
    """One stream of a resumable feed: it takes items from the source until it is ended."""

    def __init__(self, pending: Pending, resend: list[tuple[str, str]]):
        self.pending = pending
        self.resend = resend
        self.alive = True

    def _keep(self, item) -> bool:
        """Records an item this stream took: pending when the stream is alive, else carried to the next one."""
        with self.pending.lock:
            if self.alive:
                self.pending.add(*item)
                return True
            self.pending.carry.append(item)
            return False

    def _carried(self):
        """An item an ended stream took and could not send, now pending on this one; or None."""
        with self.pending.lock:
            if self.alive and self.pending.carry:
                item = self.pending.carry.popleft()
                self.pending.add(*item)
                return item
            return None

    def items(self, source, source_lock: threading.Lock):
        """The (id, text) pairs this stream sends: the resent ones, then the carried and the caller's."""
        yield from self.resend
        while self.alive:
            with source_lock:
                item = self._carried()
                if item is None:
                    item = next(source, _DONE)
                    if item is _DONE or not self._keep(item):
                        return
            yield item

    async def aitems(self, source, source_lock):
        """The asyncio twin of `items`: `source` is an async iterator, `source_lock` an asyncio.Lock."""
        for item in self.resend:
            yield item
        while self.alive:
            async with source_lock:
                item = self._carried()
                if item is None:
                    item = await anext(source, _DONE)
                    if item is _DONE or not self._keep(item):
                        return
            yield item

    def end(self) -> list[tuple[str, str]]:
        """Stops this stream taking items; returns what the next stream must resend."""
        with self.pending.lock:
            self.alive = False
            return self.pending.items()


def can_resume(error: grpc.RpcError, reconnects: int, max_reconnects: int) -> bool:
    """True when a broken stream should be reopened: a status that means "the replica went away", within bounds."""
    return reconnects < max_reconnects and error.code() in RESUMABLE
