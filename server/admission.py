"""Admission control: how many SentiService calls may be in the server at once."""
import threading


class Admission:
    """Counts admitted SentiService calls from their interception to the end of their worker task.

    gRPC's server calls the interceptor and then submits the call to the thread pool, both in its one
    polling thread; `try_admit` marks the thread, and the pool's `on_submit` ties the slot to the task's
    future, which always completes, so a slot is never lost.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.active = 0
        self._lock = threading.Lock()
        self._marked = threading.local()

    def try_admit(self) -> bool:
        """Takes a slot for the call being intercepted in this thread; False when all are taken."""
        with self._lock:
            if getattr(self._marked, "slot", False):  # the last admitted call never reached the pool
                self.active -= 1
                self._marked.slot = False
            if self.active >= self.limit:
                return False
            self.active += 1
        self._marked.slot = True
        return True

    def acquire(self) -> bool:
        """Takes a slot for a call that holds it until `release` (the HTTP transport); False when full."""
        with self._lock:
            if self.active >= self.limit:
                return False
            self.active += 1
            return True

    def release(self) -> None:
        """Gives back a slot taken by `acquire`."""
        self._release(None)

    def on_submit(self, future) -> None:
        """The pool's hook: the task just submitted from this thread holds the slot until it is done."""
        if getattr(self._marked, "slot", False):
            self._marked.slot = False
            future.add_done_callback(self._release)

    def _release(self, _future) -> None:
        with self._lock:
            self.active -= 1
