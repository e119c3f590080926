"""Optional OpenTelemetry tracing: one SERVER span per RPC, continuing the caller's W3C trace context.

Off unless configured (`--tracing console|otlp`). Needs `opentelemetry-api` and `opentelemetry-sdk`
(requirements/ops.in); `otlp` also needs `opentelemetry-exporter-otlp-proto-grpc`, which is not installed by
default (pip install it in the image that exports). The span's status is set by the interceptor from the
status code the handler ended with (handlers end calls with `context.abort`, whose code the interceptor can
read; `context.abort_with_status` would lose it on the span of the stock grpc instrumentation).
"""
import logging
from typing import Sequence

import grpc

log = logging.getLogger(__name__)
TRACER_NAME = "senti.server"


def make_tracer(kind: str, otlp_endpoint: str = "", service_name: str = "senti", tracer_provider=None):
    """A tracer for kind 'console' or 'otlp' (or from a given provider, e.g. a test's); None when 'off'."""
    if kind == "off" and tracer_provider is None:
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError as error:
        raise RuntimeError("tracing needs opentelemetry-api and opentelemetry-sdk: "
                           "pip install -r requirements/ops.in") from error
    if tracer_provider is None:
        tracer_provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        if kind == "console":
            exporter = ConsoleSpanExporter()
        else:
            try:
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            except ImportError as error:
                raise RuntimeError("--tracing otlp needs opentelemetry-exporter-otlp-proto-grpc") from error
            exporter = OTLPSpanExporter(endpoint=otlp_endpoint) if otlp_endpoint else OTLPSpanExporter()
        tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    log.info("tracing on (%s)", kind)
    return tracer_provider.get_tracer(TRACER_NAME)


def start_server_span(tracer, rpc: str, metadata: Sequence[tuple[str, str | bytes]], request_id: str):
    """Starts the RPC's SERVER span as a child of the caller's `traceparent`, when it sent one."""
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind

    carrier = {k: v for k, v in metadata if isinstance(v, str)}
    parent = propagate.extract(carrier)
    return tracer.start_span(f"senti.v1.SentiService/{rpc}" if "." not in rpc else rpc, context=parent,
                             kind=SpanKind.SERVER,
                             attributes={"rpc.system": "grpc", "rpc.method": rpc, "senti.request_id": request_id})


def end_server_span(span, code: grpc.StatusCode) -> None:
    """Records the status code on the span (errors as ERROR, as the OTel gRPC conventions say) and ends it."""
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("rpc.grpc.status_code", code.value[0])
    server_errors = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNIMPLEMENTED,
                     grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS}
    if code in server_errors:
        span.set_status(Status(StatusCode.ERROR, code.name))
    span.end()
