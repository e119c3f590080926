"""Server settings: one object, each field a command-line flag and a SENTI_ environment variable."""
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.engine import EngineConfig
from model.validation import Limits


class Settings(BaseSettings):
    """senti server settings. Flags: --field-name; environment: SENTI_FIELD_NAME."""

    model_config = SettingsConfigDict(env_prefix="SENTI_", use_attribute_docstrings=True, cli_kebab_case=True,
                                      cli_implicit_flags=True, extra="ignore")

    host: str = "[::]"
    """Address to listen on; use 127.0.0.1 to serve only this machine."""
    port: int = Field(50051, ge=0, le=65535)
    """gRPC port; 0 picks a free one (logged at start)."""
    bundle: Path = Path("bundles/e5-small")
    """Model bundle to serve: it serves every task it can (the default bundle: sentiment and zero-shot)."""
    zeroshot_bundle: Path | None = None
    """Optional second bundle (e.g. a StructBERT NLI bundle) that takes zero-shot over from `bundle`."""
    mode: Literal["batched", "lock", "per-thread"] = "batched"
    """batched: dynamic micro-batching (fastest under load); lock: one session, one text at a time (the
    reference design); per-thread: a pool of sessions, one text each."""
    variant: Literal["default", "fp32"] = "default"
    """Which ONNX file of the bundle to run: as built (INT8 for the default bundle) or fp32."""
    sessions: int = Field(0, ge=0)
    """ONNX Runtime sessions (batch workers, or the per-thread pool); 0 = one per core. Each costs memory."""
    intra_op_threads: int = Field(0, ge=0)
    """Threads inside each session; 0 = cores / sessions."""
    max_batch_size: int = Field(32, ge=1)
    """Most items in one batch."""
    max_batch_tokens: int = Field(8192, ge=1)
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
    grpc_workers: int = Field(64, ge=1)
    """Threads that run RPC handlers (a waiting unary call holds one)."""
    max_concurrent_rpcs: int = Field(256, ge=1)
    """RPCs admitted at once; beyond it callers get RESOURCE_EXHAUSTED instead of queueing without bound."""
    max_message_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    """Largest request or response message."""
    grace_s: float = Field(10.0, ge=0)
    """On SIGTERM/SIGINT: seconds to finish in-flight work after health turns NOT_SERVING."""
    log_level: str = "INFO"
    """Logging level."""

    def engine_config(self) -> EngineConfig:
        """The engine's part of these settings."""
        return EngineConfig(
            mode=self.mode, sessions=self.sessions, intra_op_threads=self.intra_op_threads,
            max_batch_size=self.max_batch_size, max_batch_tokens=self.max_batch_tokens,
            max_wait_ms=self.max_wait_ms, max_queue=self.max_queue, overhead_tokens=self.overhead_tokens,
            cache_size=self.cache_size, variant=self.variant, pad_to_max_length=self.pad_to_max_length,
            limits=self.limits())

    def limits(self) -> Limits:
        """Request limits."""
        return Limits(max_texts_per_request=self.max_texts_per_request,
                      max_labels_per_request=self.max_labels_per_request,
                      max_chars_per_text=self.max_chars_per_text, max_stream_in_flight=self.max_stream_in_flight)

    def bundle_paths(self) -> list[Path]:
        """Bundles to load, in order of precedence (later ones take over the tasks they serve)."""
        return [self.bundle] + ([self.zeroshot_bundle] if self.zeroshot_bundle else [])
