"""Runs the HTTP app with uvicorn on its own thread and event loop, beside gRPC's thread pool."""
import socket
import threading
import time

import uvicorn

START_TIMEOUT_S = 30.0


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0 = any free one); `[::]` also takes IPv4, as gRPC's does."""
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose protocol says TCP; without it Nagle holds
    # each response body (written after its head) for the client's delayed ACK, ~40 ms per keep-alive request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted connections on Linux
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class HttpServer:
    """uvicorn serving one ASGI app on a socket bound before start (so the port is known at once)."""

    def __init__(self, app, host: str, port: int, grace_s: float):
        self.socket = bind(host, port)
        self.port = self.socket.getsockname()[1]
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", http="httptools",
                                loop="asyncio", timeout_graceful_shutdown=max(1, int(grace_s)),
                                server_header=False, date_header=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]},
                                       name="senti-http", daemon=True)

    def start(self) -> None:
        """Starts serving; returns once uvicorn accepts connections."""
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the HTTP server did not start on port {self.port}")
            time.sleep(0.01)

    def begin_stop(self) -> None:
        """Stops accepting; in-flight requests finish within the grace period."""
        self.server.should_exit = True

    def join(self, timeout: float) -> None:
        """Waits for the server thread to end."""
        self.thread.join(timeout)
        self.socket.close()
