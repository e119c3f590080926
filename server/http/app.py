"""The Starlette app: unary RPCs as proto3 JSON, PredictStream as an NDJSON feed, health, OpenAPI and the page."""
import asyncio
import math
import time
from pathlib import Path
from typing import Callable

import anyio.to_thread
import grpc
from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from senti.model.futures import CancelToken

from ..errors import status_of
from ..handlers import Service
from ..policy import REQUEST_ID_KEY, RETRY_AFTER_KEY, Call, Policy, Refusal
from . import routes as proto_routes
from .feed import Feed
from .status import HTTP_STATUS, BadRequest, parse_timeout, status_json

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
OPENAPI = HERE / "openapi.json"
JSON_TYPES = ("application/json",)


def json_response(body, status: int, call: Call | None = None, headers: dict | None = None) -> JSONResponse:
    """A JSON response carrying the call's request id."""
    headers = dict(headers or {})
    if call is not None:
        headers[REQUEST_ID_KEY] = call.request_id
    return JSONResponse(body, status_code=status, headers=headers)


def error_response(code: grpc.StatusCode, message: str, call: Call | None = None, *, http_status: int | None = None,
                   retry_after_ms: int | None = None) -> JSONResponse:
    """google.rpc.Status as JSON with the HTTP status of Google's mapping (and Retry-After when there is a hint)."""
    headers = {}
    if retry_after_ms is not None:
        headers["retry-after"] = str(max(1, math.ceil(retry_after_ms / 1000)))
        headers[RETRY_AFTER_KEY] = str(retry_after_ms)
    return json_response(status_json(code, message), http_status or HTTP_STATUS[code], call, headers)


def media_type(request_or_headers) -> str:
    """The request's content type without parameters, lower-case."""
    headers = getattr(request_or_headers, "headers", request_or_headers)
    return headers.get("content-type", "").split(";")[0].strip().lower()


def peer_host(scope) -> str:
    """The caller's address without the port (the rate limit's client when there is no token)."""
    client = scope.get("client")
    return client[0] if client else "unknown"


def header_pairs(scope) -> list[tuple[str, str]]:
    """ASGI headers as (lower-case name, value) pairs, the shape gRPC metadata has."""
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", ())]


class Api:
    """The HTTP face of the Service: each request passes the same Policy as a gRPC call."""

    def __init__(self, service: Service, policy: Policy, is_serving: Callable[[], bool], max_body_bytes: int):
        self.service = service
        self.policy = policy
        self.is_serving = is_serving
        self.max_body_bytes = max_body_bytes

    # -- policy, for unary calls and the feed alike ----------------------------------------------------------

    def begin(self, rpc: str, scope) -> tuple[Call, list[tuple[str, str]]]:
        """Starts a call (request id, metrics, log context); returns it with the request's headers."""
        headers = header_pairs(scope)
        return self.policy.begin(rpc, "http", headers, peer_host(scope)), headers

    def admit(self, call: Call, headers, *, stream: bool) -> bool:
        """Admission, auth and (unary) rate limit; raises Refusal. True when a slot was taken (release it)."""
        admission = self.policy.admission
        if admission is not None and not admission.acquire():
            raise self.policy.overloaded()
        try:
            self.policy.admit(call, headers, exempt=False, limited=True, anonymous_client=call.peer,
                              rate_limit=not stream)
        except BaseException:
            if admission is not None:
                admission.release()
            raise
        return admission is not None

    def release(self, held: bool) -> None:
        """Gives back the admission slot."""
        if held:
            self.policy.admission.release()

    @staticmethod
    def deadline(headers) -> float | None:
        """The monotonic deadline a `grpc-timeout` header sets (raises BadRequest when malformed)."""
        try:
            timeout = parse_timeout(dict(headers).get("grpc-timeout"))
        except ValueError as error:
            raise BadRequest(400, grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None
        return None if timeout is None else time.monotonic() + timeout  # the engine's clock

    # -- unary RPCs ---------------------------------------------------------------------------------------

    def unary_endpoint(self, route: proto_routes.Route):
        """The Starlette endpoint of one unary RPC."""
        handler = self.service.unary(route.rpc)

        async def endpoint(request: Request) -> Response:
            call, headers = self.begin(route.rpc, request.scope)
            held = False
            try:
                deadline = self.deadline(headers)
                held = self.admit(call, headers, stream=False)
                message = await self._message(route, request)
                self.policy.admit_work(call, message, None if deadline is None else deadline - time.monotonic())
                token = CancelToken()
                response = await self._run(request, token, lambda: handler(message, deadline, token))
                self.policy.succeeded(call, response)
                return json_response(to_json(response), 200, call)
            except Refusal as refusal:
                call.code = refusal.code
                return error_response(refusal.code, refusal.message, call, retry_after_ms=refusal.retry_after_ms)
            except BadRequest as bad:
                call.code = bad.code
                return error_response(bad.code, bad.message, call, http_status=bad.http_status)
            except Exception as error:  # noqa: BLE001 - the one table turns it into a status
                call.code, message = status_of(error)
                return error_response(call.code, message, call)
            finally:
                self.release(held)
                self.policy.finish(call)
        return endpoint

    async def _message(self, route: proto_routes.Route, request: Request):
        """The request message from the JSON body (POST) or an empty one (GET)."""
        if route.verb == "GET":
            return route.request_type()
        if media_type(request) not in JSON_TYPES:
            raise BadRequest(415, grpc.StatusCode.INVALID_ARGUMENT,
                             f"content-type must be application/json, not {media_type(request) or 'missing'!r}")
        body = await read_body(request, self.max_body_bytes)
        try:
            return json_format.Parse(body.decode("utf-8"), route.request_type(), ignore_unknown_fields=False)
        except UnicodeDecodeError:
            raise BadRequest(400, grpc.StatusCode.INVALID_ARGUMENT, "the body is not valid UTF-8") from None
        except json_format.ParseError as error:
            raise BadRequest(400, grpc.StatusCode.INVALID_ARGUMENT,
                             f"the body is not a {route.request_type.DESCRIPTOR.name} in proto3 JSON: {error}") from None

    @staticmethod
    async def _run(request: Request, token: CancelToken, work: Callable):
        """Runs the blocking handler on a worker thread; a client that disconnects cancels its queued work."""
        task = asyncio.ensure_future(anyio.to_thread.run_sync(work))
        watch = asyncio.ensure_future(_disconnected(request.receive))
        try:
            await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
            if watch.done() and not task.done():
                token.cancel()  # queued items are skipped; the handler answers CANCELLED
            return await task
        finally:
            watch.cancel()

    # -- health, OpenAPI, the page --------------------------------------------------------------------------

    async def live(self, request: Request) -> Response:
        """Liveness: the process answers."""
        return JSONResponse({"status": "SERVING"})

    async def ready(self, request: Request) -> Response:
        """Readiness: the same state as grpc.health.v1 (SERVING after warm-up, NOT_SERVING when draining)."""
        serving = self.is_serving()
        return JSONResponse({"status": "SERVING" if serving else "NOT_SERVING"}, status_code=200 if serving else 503)


async def _disconnected(receive) -> None:
    """Returns when the client has gone (after the body was read, the next message is the disconnect)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 past `limit` bytes (before reading, when Content-Length says so)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, grpc.StatusCode.RESOURCE_EXHAUSTED,
                         f"the body has {int(declared)} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, grpc.StatusCode.RESOURCE_EXHAUSTED, f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def to_json(message) -> dict:
    """proto3 JSON of a response, fields with default values included (a caller sees every field)."""
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


async def _not_found(request: Request, exc: HTTPException) -> Response:
    code = grpc.StatusCode.NOT_FOUND if exc.status_code == 404 else grpc.StatusCode.UNIMPLEMENTED
    message = (f"no endpoint at {request.url.path}; see /openapi.json" if exc.status_code == 404
               else f"{request.method} is not allowed on {request.url.path}")
    return error_response(code, message, http_status=exc.status_code)


def create_app(service: Service, policy: Policy, is_serving: Callable[[], bool], max_body_bytes: int) -> Starlette:
    """The HTTP app over the same Service and Policy as the gRPC server."""
    api = Api(service, policy, is_serving, max_body_bytes)
    feed = Feed(api, service.slot)
    table = []
    for route in proto_routes.routes():
        endpoint = feed if route.streaming else api.unary_endpoint(route)
        table.append(Route(route.path, endpoint, methods=[route.verb]))
    table += [
        Route("/healthz", api.live, methods=["GET"]),
        Route("/readyz", api.ready, methods=["GET"]),
        Route("/openapi.json", lambda request: FileResponse(OPENAPI, media_type="application/json"), methods=["GET"]),
        Route("/", lambda request: FileResponse(STATIC / "index.html"), methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=table, exception_handlers={404: _not_found, 405: _not_found})
