"""Server settings: one object, each field a command-line flag and a SENTI_ environment variable."""
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from senti.model.engine import EngineConfig
from senti.model.validation import Limits


class Settings(BaseSettings):
    """senti server settings. Flags: --field-name; environment: SENTI_FIELD_NAME."""

    model_config = SettingsConfigDict(env_prefix="SENTI_", use_attribute_docstrings=True, cli_kebab_case=True,
                                      cli_implicit_flags=True, extra="ignore")

    host: str = "[::]"
    """Address to listen on; use 127.0.0.1 to serve only this machine."""
    port: int = Field(50051, ge=0, le=65535)
    """gRPC port; 0 picks a free one (logged at start)."""
    http_port: int = Field(8080, ge=-1, le=65535)
    """HTTP/JSON port: the same API (paths from the .proto's google.api.http options), the NDJSON feed, the web
    page at /, /openapi.json, /healthz and /readyz; 0 picks a free one, -1 turns HTTP off."""
    bundle: Path = Path("bundles/e5-small")
    """Model bundle to serve: it serves every task it can (the default bundle: sentiment and zero-shot)."""
    zeroshot_bundle: Path | None = None
    """Optional second bundle (e.g. a StructBERT NLI bundle) that takes zero-shot over from `bundle`."""
    classifiers: Path | None = None
    """JSON file of named classifiers (labels, template, multi_label, examples) that ClassifyZeroShot requests
    use by name (README "Named classifiers"); reloaded when it changes and on SIGHUP, a bad version leaving the
    old one serving."""
    classifiers_poll_s: float = Field(2.0, ge=0)
    """How often to check the classifiers file for changes, in seconds; 0: only at SIGHUP."""
    mode: Literal["batched", "lock", "per-thread"] = "batched"
    """batched: dynamic micro-batching (fastest under load); lock: one session, one text at a time (the
    reference design); per-thread: a pool of sessions, one text each."""
    variant: Literal["default", "fp32"] = "default"
    """Which ONNX file of the bundle to run: as built (INT8 for the default bundle) or fp32 (which then embeds
    zero-shot hypotheses too, in place of the bundle's hypothesis encoder)."""
    sessions: int = Field(0, ge=0)
    """ONNX Runtime sessions (batch workers, or the per-thread pool); 0 = one per core. Each costs memory."""
    intra_op_threads: int = Field(0, ge=0)
    """Threads inside each session; 0 = cores / sessions."""
    solo_threads: int = Field(0, ge=0)
    """batched mode: threads of one more session that runs a lone item when every worker is idle, so low load gets
    every core; 0 = all cores; no such session when it would have no more threads than a batch session."""
    max_batch_size: int = Field(32, ge=1)
    """Most items in one batch."""
    max_batch_tokens: int = Field(2048, ge=1)
    """Most padded tokens (items x longest item) in one batch; bounds memory and latency of a batch."""
    max_wait_ms: float = Field(0.0, ge=0)
    """How long an idle worker waits for a batch to fill; 0 dispatches at once (best latency at low load)."""
    max_queue: int = Field(1024, ge=1)
    """Items that may wait for a worker; beyond it requests get RESOURCE_EXHAUSTED at once instead of waiting."""
    overhead_tokens: int = Field(48, ge=0)
    """Cost of one forward pass in padded tokens: the batcher splits a group when padding would cost more."""
    cache_size: int = Field(10000, ge=0)
    """Results kept in the LRU cache (per model); 0 disables it."""
    pad_to_max_length: bool = False
    """Pad every input to the model's max tokens, as the seed design did; for benchmarks only."""
    max_texts_per_request: int = Field(256, ge=1)
    """Most texts in one Predict or ClassifyZeroShot request."""
    max_labels_per_request: int = Field(64, ge=1)
    """Most candidate labels in one ClassifyZeroShot request."""
    max_chars_per_text: int = Field(10000, ge=1)
    """Most characters in one text; longer texts are rejected before they are tokenised."""
    max_stream_in_flight: int = Field(64, ge=1)
    """Items of one PredictStream being worked on at once; a faster producer is held back by flow control."""
    max_examples_per_label: int = Field(256, ge=1)
    """Most few-shot example texts of one label in a ClassifyZeroShot request."""
    max_examples_per_request: int = Field(512, ge=1)
    """Most few-shot example texts of all labels together in one ClassifyZeroShot request. The first request
    with a new example set queues them all for the model (later ones hit the cache): keep this, plus
    max_texts_per_request, below max_queue."""
    grpc_workers: int = Field(128, ge=2)
    """Threads that run RPC handlers (a waiting unary call or an open stream holds one); the threads beyond
    max_concurrent_rpcs keep health checks and quick refusals answered under overload."""
    max_concurrent_rpcs: int = Field(112, ge=1)
    """SentiService RPCs (streams included, both transports) admitted at once: a backstop for threads, not the
    admission policy (that is max_queue_wait_ms); beyond it callers get RESOURCE_EXHAUSTED at once, with a
    'retry-after-ms' hint. Must be below grpc_workers."""
    max_queue_wait_ms: float = Field(1000.0, ge=0)
    """Admission by time: a Predict or ClassifyZeroShot call is refused at once (RESOURCE_EXHAUSTED with
    'retry-after-ms') only when the batch queue, at the throughput it measures, would keep its work from
    starting within this bound or before the caller's own deadline; 0 turns the bound off (deadlines still
    count). Streams and health are never refused by it."""
    max_message_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    """Largest request or response message."""
    grace_s: float = Field(10.0, ge=0)
    """On SIGTERM/SIGINT: seconds to finish in-flight work after health turns NOT_SERVING."""
    shutdown_delay_s: float = Field(0.0, ge=0)
    """On SIGTERM/SIGINT: seconds to keep serving after health turns NOT_SERVING, so that balancers and
    Kubernetes readiness probes stop routing here before the port closes (set it to a probe period or two).
    A second signal cuts it short."""
    log_level: str = "INFO"
    """Logging level."""
    log_format: Literal["json", "text"] = "json"
    """json: one JSON object per line (request id, RPC, status, latency in the access log); text: for people."""
    metrics_port: int = Field(9464, ge=-1, le=65535)
    """Port of the Prometheus /metrics HTTP endpoint; 0 picks a free one, -1 turns it off."""
    metrics_host: str = "0.0.0.0"
    """Address of the metrics endpoint."""
    health_port: int = Field(-1, ge=-1, le=65535)
    """A second, plaintext port serving only grpc.health.v1 (for Kubernetes gRPC probes, which speak neither TLS
    nor auth, when the main port uses TLS); -1 turns it off."""
    auth_tokens: SecretStr | None = None
    """Bearer tokens that may call senti, comma-separated, each 'client-name:token' or just 'token' (16+ chars);
    unset = no auth. Callers send metadata 'authorization: Bearer <token>'; the health service is exempt.
    Prefer auth_tokens_file (a mounted Secret) to an environment variable."""
    auth_tokens_file: Path | None = None
    """File of bearer tokens, one 'client-name:token' per line (# comments); adds to auth_tokens."""
    rate_limit_rps: float = Field(0.0, ge=0)
    """Requests per second each client may make (client = token name, mTLS common name, else peer address);
    beyond it RESOURCE_EXHAUSTED with trailing metadata 'retry-after-ms'. Stream items count one each and are
    slowed instead of refused. 0 = no limit."""
    rate_limit_burst: int = Field(0, ge=0)
    """Requests a client may make at once before the rate applies; 0 = one second's worth (at least 1)."""
    tls_cert_file: Path | None = None
    """PEM certificate chain: serve TLS instead of plaintext (needs tls_key_file)."""
    tls_key_file: Path | None = None
    """PEM private key of tls_cert_file."""
    tls_client_ca_file: Path | None = None
    """PEM CA bundle: with it, clients must present a certificate it signed (mutual TLS)."""
    tracing: Literal["off", "console", "otlp"] = "off"
    """OpenTelemetry tracing: one server span per RPC, continuing the caller's traceparent. otlp needs the
    opentelemetry-exporter-otlp-proto-grpc package (not installed by default)."""
    otlp_endpoint: str = ""
    """OTLP collector endpoint for tracing otlp (default: the exporter's, or OTEL_EXPORTER_OTLP_ENDPOINT)."""

    @model_validator(mode="after")
    def _consistent(self) -> "Settings":
        if self.max_concurrent_rpcs >= self.grpc_workers:
            raise ValueError(f"max_concurrent_rpcs ({self.max_concurrent_rpcs}) must be below grpc_workers "
                             f"({self.grpc_workers}): spare threads answer health checks and refusals")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file (mutual TLS) needs tls_cert_file and tls_key_file")
        return self

    def tokens(self) -> dict[str, str]:
        """Configured bearer tokens: {token: client name}; empty when auth is off."""
        from .auth import Authenticator
        spec = self.auth_tokens.get_secret_value() if self.auth_tokens is not None else ""
        if self.auth_tokens_file is not None:
            spec += "\n" + self.auth_tokens_file.read_text()
        return Authenticator.parse(spec)

    def engine_config(self) -> EngineConfig:
        """The engine's part of these settings."""
        return EngineConfig(
            mode=self.mode, sessions=self.sessions, intra_op_threads=self.intra_op_threads,
            solo_threads=self.solo_threads, max_batch_size=self.max_batch_size, max_batch_tokens=self.max_batch_tokens,
            max_wait_ms=self.max_wait_ms, max_queue=self.max_queue, overhead_tokens=self.overhead_tokens,
            cache_size=self.cache_size, variant=self.variant, pad_to_max_length=self.pad_to_max_length,
            limits=self.limits())

    def limits(self) -> Limits:
        """Request limits."""
        return Limits(max_texts_per_request=self.max_texts_per_request,
                      max_labels_per_request=self.max_labels_per_request,
                      max_chars_per_text=self.max_chars_per_text, max_stream_in_flight=self.max_stream_in_flight,
                      max_examples_per_label=self.max_examples_per_label,
                      max_examples_per_request=self.max_examples_per_request)

    def bundle_paths(self) -> list[Path]:
        """Bundles to load, in order of precedence (later ones take over the tasks they serve)."""
        return [self.bundle] + ([self.zeroshot_bundle] if self.zeroshot_bundle else [])


def markdown_table() -> str:
    """The settings as README's configuration table (`python -m senti.server.settings` prints it)."""
    rows = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default.as_posix() if isinstance(field.default, Path) else field.default
        shown = "none" if default is None else (str(default) or "—")
        meaning = " ".join((field.description or "").split()).replace("|", "\\|")
        rows.append(f"| `--{name.replace('_', '-')}` | `SENTI_{name.upper()}` | {shown} | {meaning} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
