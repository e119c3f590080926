"""Builds, starts and stops the gRPC server: services, health, reflection, interceptors, graceful shutdown.

Shutdown (SIGTERM/SIGINT), in order:
1. health NOT_SERVING on every service name, so balancers and readiness probes stop routing here;
2. `shutdown_delay_s` of serving as usual while they notice;
3. the port stops accepting calls (`server.stop(grace)`); accepted calls go on against a live engine;
4. once every accepted unary call has finished, the streams drain: open streams get UNAVAILABLE ("retry on
   another replica") for new items, while their queued items are still answered (a unary call gRPC hands
   over late is still served: it was accepted before the port closed);
5. at the end of the grace period whatever is left is cancelled; the engine's workers finish and stop.
"""
import logging
import signal
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import disable_created_metrics

from senti.model.classifiers import ClassifierRegistry, load_catalog, warm_classifiers
from senti.model.engine import Engine
from senti.model.errors import InvalidInput
from senti.v1 import senti_pb2, senti_pb2_grpc

from . import tls, tracing
from .handlers import VERSION, SentiServicer, Service
from .admission import Admission
from .auth import Authenticator
from .interceptors import ServingInterceptor
from .policy import Policy
from .ratelimit import RateLimiter
from .reload import EngineSlot, Reloader
from .metrics import Metrics, serve_http
from .settings import Settings

log = logging.getLogger("senti.server")
SERVICE_NAME = senti_pb2.DESCRIPTOR.services_by_name["SentiService"].full_name
HEALTH_SERVICES = ("", SERVICE_NAME)


class CountingExecutor(futures.ThreadPoolExecutor):
    """A thread pool that knows how many tasks (one per admitted RPC) are submitted and not yet finished."""

    def __init__(self, *args, on_submit=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._count_lock = threading.Lock()
        self._active = 0
        self.on_submit = on_submit

    @property
    def active(self) -> int:
        """RPCs admitted by gRPC and not finished: running or waiting for a thread."""
        return self._active

    def submit(self, fn, /, *args, **kwargs):
        with self._count_lock:
            self._active += 1
        try:
            future = super().submit(fn, *args, **kwargs)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)
        if self.on_submit is not None:
            self.on_submit(future)
        return future

    def _done(self, _future) -> None:
        with self._count_lock:
            self._active -= 1


@dataclass
class Running:
    """A started server, the port it bound, its health servicer, engine slot and metrics."""

    server: grpc.Server
    port: int
    health: health.HealthServicer
    slot: EngineSlot
    metrics: Metrics = field(default_factory=Metrics)
    interceptor: ServingInterceptor | None = None
    executor: CountingExecutor | None = None
    health_server: grpc.Server | None = None
    health_port: int | None = None
    http_server: object | None = None
    serving: bool = False
    metrics_http: object | None = None
    metrics_port: int | None = None
    reloader: Reloader | None = None
    classifiers: ClassifierRegistry = field(default_factory=lambda: ClassifierRegistry(None))

    @property
    def engine(self) -> Engine:
        """The engine serving now (a reload swaps it)."""
        return self.slot.current

    def reload(self, bundle_paths=None) -> bool:
        """Hot reload: loads and warms `bundle_paths` (default: the configured bundles) beside the serving
        engine, swaps it in, lets calls on the old one finish, then closes it; False keeps the old one."""
        return self.reloader.reload(bundle_paths)

    def reload_all(self) -> None:
        """SIGHUP: the classifiers file, then the bundles (whose warm-up computes the classifiers' prototypes)."""
        self.classifiers.reload()
        self.reload()

    def warm_up(self) -> float:
        """Warms the serving engine and the classifiers' prototypes on it; returns the seconds it took."""
        return self.engine.warm_up() + warm_classifiers(self.engine, self.classifiers.catalog)

    @property
    def http_port(self) -> int | None:
        """The HTTP/JSON port, or None when HTTP is off."""
        return None if self.http_server is None else self.http_server.port

    def set_serving(self, serving: bool) -> None:
        """Health of the whole server and of SentiService (gRPC health and HTTP /readyz alike)."""
        self.serving = serving
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in HEALTH_SERVICES:
            self.health.set(name, status)

    def stop(self, grace_s: float, delay_s: float = 0.0, hurry: threading.Event | None = None) -> bool:
        """NOT_SERVING, `delay_s` of serving as usual (cut short when `hurry` is set), then stop accepting and
        finish in-flight work within `grace_s`; True when everything finished in time (nothing was cancelled)."""
        self.set_serving(False)
        if delay_s > 0:
            (hurry or threading.Event()).wait(delay_s)
        deadline = time.monotonic() + grace_s
        stopped = self.server.stop(grace_s)
        if self.http_server is not None:
            self.http_server.begin_stop()
        self._wait_for_unary_calls(deadline)
        self.slot.close_streams()
        finished = stopped.wait(max(0.0, deadline - time.monotonic()) + 1.0)
        if self.http_server is not None:
            self.http_server.join(max(0.0, deadline - time.monotonic()) + 1.0)
        self.engine.close()
        if self.health_server is not None:
            self.health_server.stop(0)
        self.classifiers.close()
        if self.metrics_http is not None:
            self.metrics_http.shutdown()
            self.metrics_http.server_close()
        return finished

    def _wait_for_unary_calls(self, deadline: float) -> None:
        """Waits until only streams are left among the admitted calls (or the deadline passes)."""
        if self.executor is None or self.interceptor is None:
            return
        while time.monotonic() < deadline and self.executor.active > self.interceptor.active_streams:
            time.sleep(0.005)

    def serve_metrics(self, host: str, port: int) -> int:
        """Starts the Prometheus /metrics endpoint; returns its port."""
        self.metrics_http, self.metrics_port = serve_http(self.metrics, host, port)
        return self.metrics_port


def start_server(settings: Settings, engine: Engine, metrics: Metrics | None = None,
                 tracer_provider=None) -> Running:
    """Starts serving on settings.host:settings.port (0 = any free port); health NOT_SERVING until warm.

    `metrics` should be the one whose `observe_batch` the engine was loaded with (serve() does that), so that
    batch sizes are recorded; a new one is made otherwise. `tracer_provider` overrides settings.tracing.
    """
    metrics = metrics if metrics is not None else Metrics()
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    admission = Admission(settings.max_concurrent_rpcs)
    executor = CountingExecutor(max_workers=settings.grpc_workers, thread_name_prefix="senti-rpc",
                                on_submit=admission.on_submit)
    rate_limiter = None
    if settings.rate_limit_rps > 0:
        rate_limiter = RateLimiter(settings.rate_limit_rps,
                                   settings.rate_limit_burst or max(1.0, settings.rate_limit_rps))
    slot = EngineSlot(engine)
    policy = Policy(
        metrics, admission=admission, authenticator=Authenticator(settings.tokens()), rate_limiter=rate_limiter,
        tracer=tracing.make_tracer(settings.tracing, settings.otlp_endpoint, tracer_provider=tracer_provider),
        queue_wait=lambda tokens_ahead: slot.current.estimated_wait_s(tokens_ahead),
        max_queue_wait_s=settings.max_queue_wait_ms / 1000 if settings.max_queue_wait_ms > 0 else None)
    interceptor = ServingInterceptor(policy)
    metrics.bind_engine(slot, settings.mode, VERSION)

    def on_classifiers(catalog, ok: bool) -> None:
        metrics.classifier_reloads.labels("ok" if ok else "failed").inc()
        metrics.classifiers.set(len(catalog.classifiers))
        if ok and slot.current.ready:
            warm_classifiers(slot.current, catalog)

    classifiers = ClassifierRegistry(settings.classifiers, settings.limits(), on_reload=on_classifiers)
    metrics.classifiers.set(len(classifiers.catalog.classifiers))
    # gRPC's own limit is only a backstop against a flood of health or reflection calls; SentiService calls
    # are admitted by the interceptor, which answers refusals with a retry hint and keeps health answered.
    server = grpc.server(executor, interceptors=[interceptor], options=options,
                         maximum_concurrent_rpcs=4 * settings.grpc_workers)
    senti_pb2_grpc.add_SentiServiceServicer_to_server(SentiServicer(slot, classifiers), server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    address = f"{settings.host}:{settings.port}"
    if settings.tls_cert_file is not None:
        port = server.add_secure_port(address, tls.server_credentials(
            settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file))
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"could not bind {address}")
    health_server, health_port = None, None
    if settings.health_port >= 0:
        health_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="senti-health"),
                                    options=[("grpc.so_reuseport", 0)])
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, health_server)
        health_port = health_server.add_insecure_port(f"{settings.host}:{settings.health_port}")
        if health_port == 0:
            raise RuntimeError(f"could not bind the health port {settings.host}:{settings.health_port}")
        health_server.start()
    server.start()
    running = Running(server, port, health_servicer, slot, metrics, interceptor, executor, health_server,
                      health_port, classifiers=classifiers)
    classifiers.watch(settings.classifiers_poll_s)

    def load(bundle_paths=None) -> Engine:
        paths = bundle_paths if bundle_paths is not None else settings.bundle_paths()
        return Engine.load(paths, settings.engine_config(), observer=metrics.observe_batch)

    running.reloader = Reloader(slot, load, wait_s=settings.grace_s,
                                on_result=lambda ok: metrics.reloads.labels("ok" if ok else "failed").inc(),
                                prepare=lambda engine: warm_classifiers(engine, classifiers.catalog))
    running.set_serving(False)
    if settings.http_port >= 0:
        running.http_server = start_http(settings, running, policy)
    return running


def start_http(settings: Settings, running: Running, policy: Policy):
    """The HTTP/JSON server over the same engine and policy, on settings.http_port."""
    from .http.app import create_app
    from .http.serve import HttpServer
    app = create_app(Service(running.slot, running.classifiers), policy, lambda: running.serving, settings.max_message_bytes)
    http = HttpServer(app, settings.host, settings.http_port, settings.grace_s)
    http.start()
    return http


def serve(settings: Settings) -> int:
    """Loads the bundles, serves until SIGTERM/SIGINT (SIGHUP reloads them and the classifiers), drains within the grace period,
    returns the exit code."""
    stop, hurry = threading.Event(), threading.Event()

    def on_signal(signum, _frame):
        if stop.is_set():
            log.warning("second %s: skipping the rest of the shutdown delay; in-flight work still gets the grace "
                        "period", signal.Signals(signum).name)
            hurry.set()
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    started = time.monotonic()
    disable_created_metrics()  # the *_created series only add noise to every scrape
    metrics = Metrics()
    if settings.classifiers is not None:
        try:  # before the seconds of loading the bundles: a bad file is the operator's to fix at once
            load_catalog(settings.classifiers, settings.limits())
        except InvalidInput as error:
            log.error("cannot start: %s", error)
            return 2
    engine = Engine.load(settings.bundle_paths(), settings.engine_config(), observer=metrics.observe_batch)
    running = start_server(settings, engine, metrics)
    # SIGHUP: hot reload of the classifiers and the configured bundle paths, on a thread of its own (loading
    # takes seconds).
    signal.signal(signal.SIGHUP, lambda _signum, _frame: threading.Thread(
        target=running.reload_all, name="senti-reload", daemon=True).start())
    if settings.metrics_port >= 0:
        running.serve_metrics(settings.metrics_host, settings.metrics_port)
    log.info("listening", extra={"host": settings.host, "port": running.port, "http_port": running.http_port,
                                 "metrics_port": running.metrics_port,
                                 "health_port": running.health_port, "tls": settings.tls_cert_file is not None,
                                 "mutual_tls": settings.tls_client_ca_file is not None,
                                 "auth": running.interceptor.authenticator is not None,
                                 "rate_limit_rps": settings.rate_limit_rps})
    if not stop.is_set():
        warm_s = running.warm_up()
        running.set_serving(True)
        log.info("SERVING", extra={"startup_s": round(time.monotonic() - started, 3), "warm_up_s": round(warm_s, 3),
                                   "mode": settings.mode})
        stop.wait()
    log.info("stopping: NOT_SERVING, finishing in-flight work",
             extra={"grace_s": settings.grace_s, "shutdown_delay_s": settings.shutdown_delay_s})
    finished = running.stop(settings.grace_s, settings.shutdown_delay_s, hurry)
    log.info("stopped", extra={"in_flight_finished": finished})
    return 0
