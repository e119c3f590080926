"""The one table from domain errors to gRPC status codes."""
import logging

import grpc

from senti.model import errors

log = logging.getLogger(__name__)

STATUS_OF = {
    errors.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    errors.Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.NotReady: grpc.StatusCode.UNAVAILABLE,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.Cancelled: grpc.StatusCode.CANCELLED,
    errors.Unsupported: grpc.StatusCode.FAILED_PRECONDITION,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
}
INTERNAL_MESSAGE = "internal error; the server logged the details"


def status_of(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """Status code and caller-safe message for an error; anything unexpected is INTERNAL and logged."""
    for kind, code in STATUS_OF.items():
        if isinstance(error, kind):
            return code, str(error)
    log.error("unexpected error", exc_info=error)
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE
