"""gRPC status codes as HTTP statuses (Google's published mapping) and google.rpc.Status JSON bodies."""
import re

import grpc
from google.protobuf import json_format
from google.rpc import status_pb2

# google/rpc/code.proto documents the HTTP mapping of each code; CANCELLED is 499 (client closed request).
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}
_TIMEOUT = re.compile(r"^(\d{1,8})([HMSmun])$")
_UNIT_S = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


class BadRequest(Exception):
    """Input the transport rejects before the handler: an explicit HTTP status, a gRPC code, a message."""

    def __init__(self, http_status: int, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.http_status, self.code, self.message = http_status, code, message


def status_json(code: grpc.StatusCode, message: str) -> dict:
    """google.rpc.Status as proto3 JSON: {"code": 3, "message": "...", "details": []}."""
    return json_format.MessageToDict(status_pb2.Status(code=code.value[0], message=message),
                                     always_print_fields_with_no_presence=True)


def parse_timeout(value: str | None) -> float | None:
    """Seconds from a `grpc-timeout` header (`500m`, `2S`, as gRPC and grpc-gateway write it), or None.

    Raises ValueError with a message for a malformed value.
    """
    if value is None:
        return None
    match = _TIMEOUT.match(value.strip())
    if match is None:
        raise ValueError(f"grpc-timeout {value!r} is not <digits><unit> with unit H, M, S, m, u or n "
                         "(e.g. 500m for 500 ms)")
    return int(match.group(1)) * _UNIT_S[match.group(2)]
