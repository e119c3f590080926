"""HTTP routes read from the .proto's google.api.http options: the paths have one source."""
from dataclasses import dataclass

from google.api import annotations_pb2
from google.protobuf import message_factory

from senti.v1 import senti_pb2

SERVICE = senti_pb2.DESCRIPTOR.services_by_name["SentiService"]


@dataclass(frozen=True)
class Route:
    """One RPC's HTTP binding."""

    rpc: str
    verb: str
    path: str
    request_type: type
    response_type: type
    streaming: bool


def routes() -> list[Route]:
    """Every SentiService RPC that has a google.api.http option, in the order of the .proto."""
    found = []
    for method in SERVICE.methods:
        rule = method.GetOptions().Extensions[annotations_pb2.http]
        verb = rule.WhichOneof("pattern")
        if verb is None:
            continue
        found.append(Route(method.name, verb.upper(), getattr(rule, verb),
                           message_factory.GetMessageClass(method.input_type),
                           message_factory.GetMessageClass(method.output_type),
                           method.client_streaming or method.server_streaming))
    return found
