"""Builds, starts and stops the gRPC server: services, health, reflection, graceful shutdown."""
import logging
import signal
import threading
import time
from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from model.engine import Engine
from protos import senti_pb2, senti_pb2_grpc

from .handlers import SentiServicer
from .settings import Settings

log = logging.getLogger("senti.server")
SERVICE_NAME = senti_pb2.DESCRIPTOR.services_by_name["SentiService"].full_name
HEALTH_SERVICES = ("", SERVICE_NAME)


@dataclass
class Running:
    """A started server, the port it bound, and its health servicer."""

    server: grpc.Server
    port: int
    health: health.HealthServicer
    engine: Engine

    def set_serving(self, serving: bool) -> None:
        """Health of the whole server and of SentiService."""
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in HEALTH_SERVICES:
            self.health.set(name, status)

    def stop(self, grace_s: float) -> None:
        """NOT_SERVING first (balancers stop routing), then finish in-flight RPCs within the grace period."""
        self.set_serving(False)
        self.engine.drain()
        self.server.stop(grace_s).wait()
        self.engine.close()


def start_server(settings: Settings, engine: Engine) -> Running:
    """Starts serving on settings.host:settings.port (0 = any free port); health NOT_SERVING until warm."""
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=settings.grpc_workers, thread_name_prefix="senti-rpc"),
                         options=options, maximum_concurrent_rpcs=settings.max_concurrent_rpcs)
    senti_pb2_grpc.add_SentiServiceServicer_to_server(SentiServicer(engine), server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    if port == 0:
        raise RuntimeError(f"could not bind {settings.host}:{settings.port}")
    server.start()
    running = Running(server, port, health_servicer, engine)
    running.set_serving(False)
    return running


def serve(settings: Settings) -> int:
    """Loads the bundles, serves until SIGTERM/SIGINT, drains within the grace period, returns the exit code."""
    started = time.monotonic()
    engine = Engine.load(settings.bundle_paths(), settings.engine_config())
    running = start_server(settings, engine)
    log.info("listening on %s:%d; warming up", settings.host, running.port)
    warm_s = engine.warm_up()
    running.set_serving(True)
    log.info("SERVING after %.2f s (warm-up %.2f s); mode=%s", time.monotonic() - started, warm_s, settings.mode)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    stop.wait()
    log.info("stopping: NOT_SERVING, finishing in-flight work within %.1f s", settings.grace_s)
    running.stop(settings.grace_s)
    log.info("stopped")
    return 0
