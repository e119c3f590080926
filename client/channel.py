"""Channel settings shared by both clients: targets over several replicas, round_robin, and the retry policy."""
import ipaddress
import json
import random
import socket
from dataclasses import dataclass
from typing import Sequence

SERVICE = "senti.v1.SentiService"
RETRY_AFTER_KEY = "retry-after-ms"  # the server's hint on RESOURCE_EXHAUSTED (trailing metadata)


@dataclass(frozen=True)
class RetryPolicy:
    """How a call is retried; both kinds are bounded by `max_attempts` and by the call's deadline.

    - UNAVAILABLE (a replica went away, a connection broke before the server answered): gRPC's own retry
      policy, given to the channel as service config, with exponential backoff and jitter; gRPC caps attempts
      at 5 and never retries once the server has sent response headers.
    - RESOURCE_EXHAUSTED (the server refused before doing any work): the client waits the server's
      `retry-after-ms` hint (or the backoff when there is none), plus up to 10% jitter, and tries again, but
      only when the wait fits in the call's remaining deadline and is at most `max_retry_after_s`. Unary
      calls only: a stream is never resent.

    `RetryPolicy(max_attempts=1)` turns both off.
    """

    max_attempts: int = 3
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    backoff_multiplier: float = 2.0
    max_retry_after_s: float = 5.0

    def __post_init__(self):
        if not 1 <= self.max_attempts <= 5:
            raise ValueError(f"max_attempts is {self.max_attempts}; it must be 1 to 5 (gRPC's own cap)")
        if self.initial_backoff_s <= 0 or self.max_backoff_s < self.initial_backoff_s or self.backoff_multiplier < 1:
            raise ValueError("backoff needs 0 < initial_backoff_s <= max_backoff_s and backoff_multiplier >= 1")

    def backoff_s(self, retry: int) -> float:
        """The backoff before retry number `retry` (1 = the first retry), without jitter."""
        return min(self.max_backoff_s, self.initial_backoff_s * self.backoff_multiplier ** (retry - 1))

    def resource_exhausted_delay(self, retry: int, trailing_metadata, remaining_s: float | None) -> float | None:
        """Seconds to wait before retry number `retry` of a refused call, or None when it must not be retried."""
        if retry >= self.max_attempts:
            return None
        hint = retry_after_s(trailing_metadata)
        if hint is not None and hint > self.max_retry_after_s:
            return None
        delay = (self.backoff_s(retry) if hint is None else hint) * random.uniform(1.0, 1.1)
        if remaining_s is not None and delay >= remaining_s:
            return None
        return delay

    def service_config(self) -> str:
        """gRPC service config: round_robin over every resolved address, and the UNAVAILABLE retry policy."""
        config: dict = {"loadBalancingConfig": [{"round_robin": {}}]}
        if self.max_attempts > 1:
            config["methodConfig"] = [{"name": [{"service": SERVICE}], "retryPolicy": {
                "maxAttempts": self.max_attempts,
                "initialBackoff": f"{self.initial_backoff_s}s",
                "maxBackoff": f"{self.max_backoff_s}s",
                "backoffMultiplier": self.backoff_multiplier,
                "retryableStatusCodes": ["UNAVAILABLE"],
            }}]
        return json.dumps(config)


def retry_after_s(trailing_metadata) -> float | None:
    """The server's `retry-after-ms` hint in seconds, or None."""
    for key, value in trailing_metadata or ():
        if key == RETRY_AFTER_KEY:
            try:
                return max(0.0, int(value) / 1000)
            except ValueError:
                return None
    return None


def channel_target(target: str | Sequence[str]) -> str:
    """A gRPC target for one address or name (`host:port`, `dns:///name:port`) or for a list of replicas.

    A list becomes a static `ipv4:`/`ipv6:` target of every address its hosts resolve to now, which the
    channel's round_robin policy spreads calls over; for replicas that come and go, give one `dns:///` name
    (e.g. a Kubernetes headless Service) instead: it is re-resolved as the channel needs.
    """
    if isinstance(target, str):
        return target
    if not target:
        raise ValueError("the list of targets is empty")
    families: dict[str, list[str]] = {"ipv4": [], "ipv6": []}
    for address in target:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"target {address!r} is not host:port")
        for ip in _resolve(host.strip("[]"), int(port)):
            family = "ipv6" if ipaddress.ip_address(ip).version == 6 else "ipv4"
            entry = f"[{ip}]:{port}" if family == "ipv6" else f"{ip}:{port}"
            if entry not in families[family]:
                families[family].append(entry)
    if families["ipv4"] and families["ipv6"]:
        raise ValueError(f"targets {list(target)} mix IPv4 and IPv6 addresses; give one family")
    family = "ipv6" if families["ipv6"] else "ipv4"
    return f"{family}:{','.join(families[family])}"


def _resolve(host: str, port: int) -> list[str]:
    """The addresses a host resolves to (an IP literal is itself); IPv4 ones only when it has both (localhost)."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        found = {info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
        ipv4 = {ip for ip in found if ipaddress.ip_address(ip).version == 4}
        return sorted(ipv4 or found)


def channel_options(policy: RetryPolicy) -> list[tuple[str, object]]:
    """Channel arguments for the policy."""
    return [("grpc.service_config", policy.service_config()), ("grpc.enable_retries", int(policy.max_attempts > 1))]
