"""Bearer-token authentication: which client, if any, a call's metadata names."""
import hmac
import re
from typing import Sequence


class Authenticator:
    """Checks `authorization: Bearer <token>` against the configured tokens; knows each token's client name."""

    def __init__(self, tokens: dict[str, str]):
        """tokens: token -> client name. Empty means auth is off."""
        self._tokens = [(token.encode(), name) for token, name in tokens.items()]

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    @staticmethod
    def parse(spec: str) -> dict[str, str]:
        """'name:token' or 'token' entries separated by commas or newlines (# comments) -> {token: name}."""
        out: dict[str, str] = {}
        for i, raw in enumerate(re.split(r"[,\n]", spec)):
            entry = raw.split("#", 1)[0].strip()
            if not entry:
                continue
            name, sep, token = entry.partition(":")
            if not sep:
                name, token = f"client-{i + 1}", entry
            token = token.strip()
            if len(token) < 16:
                raise ValueError(f"auth token of {name.strip()!r} is shorter than 16 characters")
            out[token] = name.strip()
        return out

    def client(self, metadata: Sequence[tuple[str, str | bytes]]) -> str | None:
        """The client name of a valid bearer token in the metadata, or None."""
        header = next((v for k, v in metadata if k == "authorization"), None)
        if not isinstance(header, str) or not header[:7].lower() == "bearer ":
            return None
        offered = header[7:].strip().encode()
        found = None
        for token, name in self._tokens:  # compare with every token, in constant time each
            if hmac.compare_digest(offered, token):
                found = name
        return found
