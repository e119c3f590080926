"""OpenAPI 3.1 of the HTTP/JSON API, built from senti.proto's descriptors (protos/generate.py writes it).

The input is a FileDescriptorSet compiled with --include_imports --include_source_info, so the .proto comments
become descriptions. Paths come from each RPC's google.api.http rule; schemas are every message and enum the
RPCs reach, in protobuf's proto3 JSON mapping (json_name properties, 64-bit integers as strings, enums as their
value names). Errors are google.rpc.Status with the HTTP statuses of server/http/status.py. The non-proto
endpoints (/healthz, /readyz) are described here, beside the headers every RPC reads.

`render` is deterministic (sorted keys, two-space indent, trailing newline): tests/test_protos.py compares it
byte for byte with the committed server/http/openapi.json.
"""
from __future__ import annotations

import ast
import json
import re
import tomllib
from pathlib import Path

import grpc
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from senti.server.http import status as http_status

ROOT = Path(__file__).resolve().parent.parent
PROTO_FILE = "senti/v1/senti.proto"
SERVICE = "senti.v1.SentiService"
OPENAPI_VERSION = "3.1.0"
JSON = "application/json"
NDJSON = "application/x-ndjson"  # server/http/feed.py also accepts application/jsonl and application/json-lines

# The non-proto endpoints: (verb, path) of each, which the tests compare with the app's routing table.
HEALTH_PATHS = (("GET", "/healthz"), ("GET", "/readyz"))

F = descriptor_pb2.FieldDescriptorProto
# proto3 JSON mapping of the scalar types (https://protobuf.dev/programming-guides/json/).
SCALARS = {
    F.TYPE_DOUBLE: {"type": "number", "format": "double"},
    F.TYPE_FLOAT: {"type": "number", "format": "float"},
    F.TYPE_INT64: {"type": "string", "format": "int64", "pattern": r"^-?[0-9]+$"},
    F.TYPE_SINT64: {"type": "string", "format": "int64", "pattern": r"^-?[0-9]+$"},
    F.TYPE_SFIXED64: {"type": "string", "format": "int64", "pattern": r"^-?[0-9]+$"},
    F.TYPE_UINT64: {"type": "string", "format": "uint64", "pattern": r"^[0-9]+$"},
    F.TYPE_FIXED64: {"type": "string", "format": "uint64", "pattern": r"^[0-9]+$"},
    F.TYPE_INT32: {"type": "integer", "format": "int32"},
    F.TYPE_SINT32: {"type": "integer", "format": "int32"},
    F.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    F.TYPE_UINT32: {"type": "integer", "format": "uint32", "minimum": 0},
    F.TYPE_FIXED32: {"type": "integer", "format": "uint32", "minimum": 0},
    F.TYPE_BOOL: {"type": "boolean"},
    F.TYPE_STRING: {"type": "string"},
    F.TYPE_BYTES: {"type": "string", "format": "byte", "description": "Base64 (standard or URL-safe alphabet)."},
}
# Well-known types have their own JSON forms; their .proto comments are about the language APIs, not JSON.
_WRAPPERS = {"DoubleValue": F.TYPE_DOUBLE, "FloatValue": F.TYPE_FLOAT, "Int64Value": F.TYPE_INT64,
             "UInt64Value": F.TYPE_UINT64, "Int32Value": F.TYPE_INT32, "UInt32Value": F.TYPE_UINT32,
             "BoolValue": F.TYPE_BOOL, "StringValue": F.TYPE_STRING, "BytesValue": F.TYPE_BYTES}
WELL_KNOWN = {
    "google.protobuf.Any": {
        "type": "object", "required": ["@type"], "additionalProperties": True,
        "properties": {"@type": {"type": "string", "description": "A URL naming the message type, e.g. "
                                 "`type.googleapis.com/google.rpc.ErrorInfo`."}},
        "description": "Any message, as its proto3 JSON object with an extra `@type` member naming its type "
                       "(a well-known type with its own JSON form sits under `value`).",
    },
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time",
                                  "description": "RFC 3339 time in UTC, e.g. `2024-01-01T00:00:00Z`."},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$",
                                 "description": "Seconds with an `s` suffix, e.g. `1.5s`."},
    "google.protobuf.FieldMask": {"type": "string", "description": "Comma-separated lowerCamelCase field paths."},
    "google.protobuf.Empty": {"type": "object", "description": "An empty JSON object."},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True, "description": "Any JSON object."},
    "google.protobuf.Value": {"description": "Any JSON value."},
    "google.protobuf.ListValue": {"type": "array", "items": {}, "description": "Any JSON array."},
    **{f"google.protobuf.{name}": {**SCALARS[kind], "description": f"A {name} wrapper: the bare value in JSON."}
       for name, kind in _WRAPPERS.items()},
}

# Error responses. The gRPC code of each HTTP status comes from server/http/status.py's table; 413 and 415 are
# the transport's own (server/http/app.py and feed.py). Each entry: (gRPC code or HTTP status, what it means).
_GRPC_ERRORS = (
    (grpc.StatusCode.INVALID_ARGUMENT, "the request is not valid: empty text, too many texts or labels, a "
     "duplicate or empty label, a template without exactly one `{}`, a text over the character limit (or over the "
     "model's max tokens with `strict`), a body that is not the request message in proto3 JSON, or a malformed "
     "`grpc-timeout`"),
    (grpc.StatusCode.FAILED_PRECONDITION, "the loaded models do not serve this task"),
    (grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token, when the server requires one"),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, "the concurrent-request limit, the caller's rate limit or the batch "
     "queue is full: retry after `Retry-After` seconds (`retry-after-ms` milliseconds) when the server sends "
     "them, else with backoff"),
    (grpc.StatusCode.CANCELLED, "the client closed the request before the answer (queued work is skipped)"),
    (grpc.StatusCode.UNAVAILABLE, "not warmed up yet, or draining for shutdown: retry on another replica"),
    (grpc.StatusCode.DEADLINE_EXCEEDED, "the `grpc-timeout` deadline passed while the work waited in the queue "
     "(no inference was spent)"),
    (grpc.StatusCode.INTERNAL, "a bug: logged with a traceback on the server, no internals in the message"),
)
_TRANSPORT_ERRORS = {
    413: (grpc.StatusCode.RESOURCE_EXHAUSTED, "the body is over the server's size limit"),
    415: (grpc.StatusCode.INVALID_ARGUMENT, "the `content-type` is not the one the endpoint reads"),
}
# Which error statuses each kind of operation documents.
UNARY_BODY_ERRORS = (400, 401, 413, 415, 429, 499, 500, 503, 504)
UNARY_NO_BODY_ERRORS = (400, 401, 429, 499, 500, 503, 504)
STREAM_ERRORS = (400, 401, 415, 429)  # before the feed starts; afterwards each item carries its own error
RETRY_STATUSES = (429,)


def comment(location) -> str:
    """A source location's comment as Markdown: the leading comment (else the trailing one), de-indented."""
    if location is None:
        return ""
    text = location.leading_comments or location.trailing_comments
    lines = [line[1:] if line.startswith(" ") else line for line in text.split("\n")]
    return "\n".join(line.rstrip() for line in lines).strip()


def summary_of(text: str) -> str:
    """The first sentence of a description."""
    first = re.split(r"(?<=\.)\s+(?=[A-Z`])", text.strip(), maxsplit=1)[0]
    return " ".join(first.split())


def served_version() -> str:
    """The version GetModelInfo reports (server/handlers.py VERSION), else the pyproject version."""
    tree = ast.parse((ROOT / "server" / "handlers.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "VERSION" for t in node.targets):
            return ast.literal_eval(node.value)
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _with_description(schema: dict, description: str) -> dict:
    return {**schema, "description": description} if description else schema


class Descriptors:
    """Messages, enums, services and source comments of a FileDescriptorSet, by full name."""

    def __init__(self, fds: descriptor_pb2.FileDescriptorSet):
        self.files = {f.name: f for f in fds.file}
        self.messages: dict[str, tuple] = {}  # full name -> (DescriptorProto, source path, locations)
        self.enums: dict[str, tuple] = {}
        self.services: dict[str, tuple] = {}
        for file in fds.file:
            if not file.HasField("source_code_info"):
                raise ValueError(f"{file.name} has no source info: compile with --include_source_info")
            locations = {tuple(loc.path): loc for loc in file.source_code_info.location}
            prefix = f"{file.package}." if file.package else ""
            for i, message in enumerate(file.message_type):
                self._add_message(prefix + message.name, message, (4, i), locations)
            for i, enum in enumerate(file.enum_type):
                self.enums[prefix + enum.name] = (enum, (5, i), locations)
            for i, service in enumerate(file.service):
                self.services[prefix + service.name] = (service, (6, i), locations)

    def _add_message(self, name: str, message, path: tuple, locations: dict) -> None:
        self.messages[name] = (message, path, locations)
        for i, nested in enumerate(message.nested_type):
            self._add_message(f"{name}.{nested.name}", nested, path + (3, i), locations)
        for i, enum in enumerate(message.enum_type):
            self.enums[f"{name}.{enum.name}"] = (enum, path + (4, i), locations)


class Builder:
    """Builds the OpenAPI document; `schemas` fills as messages are reached."""

    def __init__(self, fds: descriptor_pb2.FileDescriptorSet):
        self.d = Descriptors(fds)
        self.schemas: dict[str, dict] = {}

    # -- schemas --------------------------------------------------------------------------------------------

    def reach(self, type_name: str) -> str:
        """Adds the schema of a message or enum (and all it reaches); returns its component name."""
        name = type_name.lstrip(".")
        if name in self.schemas:
            return name
        if name in WELL_KNOWN:
            self.schemas[name] = WELL_KNOWN[name]
        elif name in self.d.enums:
            self.schemas[name] = self.enum_schema(*self.d.enums[name])
        elif name in self.d.messages:
            self.schemas[name] = {}  # placeholder: recursive messages refer to themselves
            self.schemas[name] = self.message_schema(name, *self.d.messages[name])
        else:
            raise ValueError(f"{name} is in no file of the descriptor set")
        return name

    def enum_schema(self, enum, path: tuple, locations: dict) -> dict:
        values = []
        for i, value in enumerate(enum.value):
            text = comment(locations.get(path + (2, i)))
            values.append(f"- `{value.name}`" + (f": {text}" if text else ""))
        description = "\n\n".join(part for part in (comment(locations.get(path)), "\n".join(values)) if part)
        return {"type": "string", "enum": [value.name for value in enum.value], "description": description}

    def field_schema(self, field) -> dict:
        """The JSON schema of one field's value (repeated and map included), without its description."""
        if field.type in (F.TYPE_MESSAGE, F.TYPE_GROUP):
            entry = self.d.messages.get(field.type_name.lstrip("."))
            if entry is not None and entry[0].options.map_entry:
                key, value = entry[0].field
                value_schema = self.field_schema(value)
                schema = {"type": "object", "additionalProperties": value_schema}
                if key.type != F.TYPE_STRING:
                    schema["description"] = "Keys are the map's integer or boolean keys written as strings."
                return schema
            item = ref(self.reach(field.type_name))
        elif field.type == F.TYPE_ENUM:
            item = ref(self.reach(field.type_name))
        else:
            item = dict(SCALARS[field.type])
        if field.label == F.LABEL_REPEATED:
            return {"type": "array", "items": item}
        return item

    def message_schema(self, name: str, message, path: tuple, locations: dict) -> dict:
        properties = {}
        oneofs: dict[int, list[str]] = {}
        for i, field in enumerate(message.field):
            json_name = field.json_name or _camel(field.name)
            text = comment(locations.get(path + (2, i)))
            if field.HasField("oneof_index") and not field.proto3_optional:
                oneofs.setdefault(field.oneof_index, []).append(json_name)
            properties[json_name] = (field, text)
        notes, exclusive = [], []
        for index, members in oneofs.items():
            oneof = message.oneof_decl[index]
            text = comment(locations.get(path + (8, index)))
            names = ", ".join(f"`{member}`" for member in members)
            notes.append(f"Oneof `{oneof.name}`: at most one of {names} is set." + (f" {text}" if text else ""))
            for member in members:
                field, field_text = properties[member]
                properties[member] = (field, f"{field_text}\n\nPart of oneof `{oneof.name}`: at most one of "
                                             f"{names} is set.".strip())
            pairs = [[a, b] for i, a in enumerate(members) for b in members[i + 1:]]
            if pairs:
                exclusive.append({"not": {"anyOf": [{"required": pair} for pair in pairs]}})
        description = "\n\n".join(part for part in (comment(locations.get(path)), *notes) if part)
        schema = {"type": "object", "properties": {
            json_name: _with_description(self.field_schema(field), text)
            for json_name, (field, text) in properties.items()}}
        if description:
            schema["description"] = description
        if exclusive:
            schema["allOf"] = exclusive
        return schema

    # -- operations -----------------------------------------------------------------------------------------

    def operations(self) -> dict:
        service, path, locations = self.d.services[SERVICE]
        paths: dict[str, dict] = {}
        for i, method in enumerate(service.method):
            rule = method.options.Extensions[annotations_pb2.http]
            verb = rule.WhichOneof("pattern")
            if verb is None:
                continue
            where = f"{SERVICE}.{method.name}"
            if verb == "custom" or rule.additional_bindings or rule.response_body or "{" in getattr(rule, verb):
                # server/http/routes.py and app.py serve one verb + literal path with the whole message as body.
                raise ValueError(f"{where}: the HTTP app serves only get/post/put/patch/delete on a literal "
                                 "path, without additional_bindings or response_body")
            streaming = method.client_streaming or method.server_streaming
            request = self.reach(method.input_type)
            response = self.reach(method.output_type)
            if verb == "get":
                if rule.body or self.d.messages[request][0].field:
                    raise ValueError(f"{where}: a GET's request must be empty (the HTTP app reads no query)")
            elif rule.body != "*":
                raise ValueError(f"{where}: the HTTP app reads the whole request message as the body (body: \"*\")")
            text = comment(locations.get(path + (2, i)))
            operation = {
                "operationId": f"{service.name}_{method.name}",
                "tags": [service.name],
                "summary": summary_of(text),
                "description": text,
                "parameters": [{"$ref": "#/components/parameters/x-request-id"},
                               {"$ref": "#/components/parameters/grpc-timeout"}],
            }
            if streaming:
                operation["description"] = "\n\n".join(part for part in (text, _ndjson_note(request, response))
                                                       if part)
                operation["requestBody"] = {
                    "required": True,
                    "description": f"NDJSON: one `{request}` in proto3 JSON per line (`application/jsonl` and "
                                   "`application/json-lines` are accepted too).",
                    "content": {NDJSON: {"schema": _with_description(ref(request), f"The schema of each line: "
                                                                     f"one `{request}`.")}},
                }
                ok = {"description": f"NDJSON: one `{response}` in proto3 JSON per line, one for each request "
                                     "line, as the items finish.",
                      "headers": {"x-request-id": {"$ref": "#/components/headers/x-request-id"}},
                      "content": {NDJSON: {"schema": _with_description(ref(response), f"The schema of each "
                                                                       f"line: one `{response}`.")}}}
                errors = STREAM_ERRORS
            else:
                if verb != "get":
                    operation["requestBody"] = {
                        "required": True,
                        "description": f"`{request}` in proto3 JSON (lowerCamelCase names; the proto's snake_case "
                                       "names are accepted too).",
                        "content": {JSON: {"schema": ref(request)}},
                    }
                ok = {"description": f"`{response}` in proto3 JSON; every field is written, default values "
                                     "included (a message field only when set).",
                      "headers": {"x-request-id": {"$ref": "#/components/headers/x-request-id"}},
                      "content": {JSON: {"schema": ref(response)}}}
                errors = UNARY_NO_BODY_ERRORS if verb == "get" else UNARY_BODY_ERRORS
            operation["responses"] = {"200": ok, **{str(code): {"$ref": f"#/components/responses/{code}"}
                                                    for code in errors},
                                      "default": {"$ref": "#/components/responses/default"}}
            route = paths.setdefault(getattr(rule, verb), {})
            if verb in route:
                raise ValueError(f"{where}: {verb.upper()} {getattr(rule, verb)} is bound twice")
            route[verb] = operation
        return paths

    def error_responses(self) -> dict:
        status = self.reach("google.rpc.Status")
        by_http: dict[int, list[str]] = {}
        for code, meaning in _GRPC_ERRORS:
            by_http.setdefault(http_status.HTTP_STATUS[code], []).append(f"`{code.name}` ({code.value[0]}): {meaning}.")
        for http, (code, meaning) in _TRANSPORT_ERRORS.items():
            by_http.setdefault(http, []).append(f"`{code.name}` ({code.value[0]}): {meaning}.")
        responses = {}
        for http, lines in sorted(by_http.items()):
            headers = {"x-request-id": {"$ref": "#/components/headers/x-request-id"}}
            if http in RETRY_STATUSES:
                headers |= {"Retry-After": {"$ref": "#/components/headers/Retry-After"},
                            "retry-after-ms": {"$ref": "#/components/headers/retry-after-ms"}}
            responses[str(http)] = {"description": f"`{status}` with the code:\n\n" + "\n".join(f"- {line}"
                                                                                              for line in lines),
                                    "headers": headers, "content": {JSON: {"schema": ref(status)}}}
        responses["default"] = {"description": f"Any other error, as `{status}` with the HTTP status of "
                                               "Google's mapping of its code.",
                                "content": {JSON: {"schema": ref(status)}}}
        return responses

    def document(self) -> dict:
        file = self.d.files[PROTO_FILE]
        locations = {tuple(loc.path): loc for loc in file.source_code_info.location}
        syntax = locations.get((12,))  # the file's opening comment sits before `syntax`
        header = comment(syntax) or "\n\n".join(c.strip() for c in (syntax.leading_detached_comments if syntax else ()))
        service, path, service_locations = self.d.services[SERVICE]
        paths = self.operations()
        paths.update(_health_paths())
        responses = self.error_responses()
        self.schemas["senti.HealthStatus"] = HEALTH_STATUS
        project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
        return {
            "openapi": OPENAPI_VERSION,
            "info": {
                "title": "senti HTTP/JSON API",
                "version": served_version(),
                "summary": project["description"],
                "description": "Generated from protos/senti/v1/senti.proto by `make proto`; do not edit.\n\n"
                               + header,
                "license": {"name": project["license"]["text"], "identifier": project["license"]["text"]},
            },
            "tags": [{"name": service.name, "description": comment(service_locations.get(path))},
                     {"name": "health", "description": "Liveness and readiness probes (no token needed)."}],
            "security": [{"bearer": []}, {}],
            "paths": paths,
            "components": {
                "schemas": self.schemas,
                "responses": responses,
                "parameters": PARAMETERS,
                "headers": HEADERS,
                "securitySchemes": {"bearer": {
                    "type": "http", "scheme": "bearer",
                    "description": "`authorization: Bearer <token>`, when the server requires tokens (health "
                                   "probes are exempt)."}},
            },
        }


def _camel(name: str) -> str:
    """protoc's json_name of a field name (used only when a descriptor lacks json_name)."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _ndjson_note(request: str, response: str) -> str:
    return (f"Over HTTP this is an NDJSON feed: the request body (`{NDJSON}`) holds one `{request}` in proto3 "
            f"JSON per line, and the 200 response (`{NDJSON}`) streams one `{response}` per line as the items "
            "finish, possibly out of order. Every line is answered exactly once: a line that is not valid JSON or "
            f"not a `{request}` is answered with its own line whose `error` is a `google.rpc.Status`, and the "
            "feed goes on; so are items refused by the model (per-item errors). The statuses other than 200 are "
            "whole `google.rpc.Status` JSON responses, sent before the feed starts.")


HEALTH_STATUS = {
    "type": "object", "required": ["status"],
    "properties": {"status": {"type": "string", "enum": ["SERVING", "NOT_SERVING"]}},
    "description": "A health probe's answer, in grpc.health.v1's terms.",
}


def _health_paths() -> dict:
    health = {"content": {JSON: {"schema": ref("senti.HealthStatus")}}}
    serving = {**health, "description": "The process answers.",
               "content": {JSON: {**health["content"][JSON], "example": {"status": "SERVING"}}}}
    return {
        "/healthz": {"get": {
            "operationId": "healthz", "tags": ["health"], "security": [], "summary": "Liveness.",
            "description": "Liveness: the process answers. Always `{\"status\": \"SERVING\"}`.",
            "responses": {"200": serving}}},
        "/readyz": {"get": {
            "operationId": "readyz", "tags": ["health"], "security": [], "summary": "Readiness.",
            "description": "Readiness: the same state as grpc.health.v1 on the gRPC port (SERVING after warm-up, "
                           "NOT_SERVING before it and while draining for shutdown).",
            "responses": {
                "200": {**serving, "description": "Serving: send traffic."},
                "503": {"description": "Not serving (warming up or draining): send traffic elsewhere.",
                        "content": {JSON: {**health["content"][JSON], "example": {"status": "NOT_SERVING"}}}},
            }}},
    }


PARAMETERS = {
    "x-request-id": {
        "name": "x-request-id", "in": "header", "required": False,
        "schema": {"type": "string"},
        "description": "The caller's id for the request: the server logs it and echoes it in the `x-request-id` "
                       "response header, cut to printable ASCII and at most 64 characters (it makes one up when "
                       "none is sent).",
    },
    "grpc-timeout": {
        "name": "grpc-timeout", "in": "header", "required": False,
        "schema": {"type": "string", "pattern": http_status._TIMEOUT.pattern},
        "description": "The deadline, as gRPC and grpc-gateway write it: up to 8 digits and a unit, `H` hours, `M` "
                       "minutes, `S` seconds, `m` milliseconds, `u` microseconds, `n` nanoseconds (e.g. `500m`, "
                       "`2S`). Work still queued when it passes is answered with DEADLINE_EXCEEDED (504).",
        "examples": {"500 ms": {"value": "500m"}, "2 s": {"value": "2S"}},
    },
}
HEADERS = {
    "x-request-id": {"schema": {"type": "string"},
                     "description": "The request id: the caller's, or one the server made up."},
    "Retry-After": {"schema": {"type": "integer", "minimum": 1},
                    "description": "Seconds to wait before retrying (sent when the server has a retry hint)."},
    "retry-after-ms": {"schema": {"type": "integer", "minimum": 1},
                       "description": "The same hint in milliseconds, as the gRPC transport's trailing metadata."},
}


def build(fds: descriptor_pb2.FileDescriptorSet) -> dict:
    """The OpenAPI document of the HTTP/JSON API described by a FileDescriptorSet with source info."""
    return Builder(fds).document()


def render(document: dict) -> str:
    """The document as deterministic JSON text: sorted keys, two-space indent, UTF-8, trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
