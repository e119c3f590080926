"""PredictStream over HTTP: an NDJSON feed, one PredictStreamRequest per line in, one response per line out.

Each line is answered exactly once (out of order, as results finish); a bad line gets its own error line and
the feed goes on. At most max_stream_in_flight lines are in flight: the reader stops pulling the body while
they are, so the server's socket buffer fills and TCP holds a fast uploader back. A client that disconnects
cancels its queued work. Written as a raw ASGI app: the body and the answers stream at the same time.
"""
import asyncio
import json
import time

import grpc
from google.protobuf import json_format

from senti.model.futures import CancelToken
from senti.v1 import senti_pb2 as pb

from .. import convert
from ..handlers import item_response, submit_item
from ..policy import REQUEST_ID_KEY, Refusal
from .status import HTTP_STATUS, BadRequest, status_json

NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-lines")
_END = object()


class LineSplitter:
    """Cuts a body into lines as it arrives; a line past `limit` bytes comes out as None and is not kept."""

    def __init__(self, limit: int):
        self.limit = limit
        self.buffer = bytearray()
        self.overlong = False  # the line being read is past the limit: its bytes are dropped

    def feed(self, chunk: bytes):
        """Yields every line `chunk` completes."""
        self.buffer.extend(chunk)
        while (end := self.buffer.find(b"\n")) >= 0:
            line = bytes(self.buffer[:end])
            del self.buffer[:end + 1]
            yield None if self.overlong or len(line) > self.limit else line
            self.overlong = False
        if len(self.buffer) > self.limit:
            self.buffer.clear()
            self.overlong = True

    def end(self):
        """Yields the last line when the body did not end with a newline."""
        if self.buffer or self.overlong:
            yield None if self.overlong else bytes(self.buffer)
        self.buffer.clear()
        self.overlong = False


def parse_line(number: int, line: bytes | None) -> pb.PredictStreamRequest | pb.PredictStreamResponse:
    """The request on one line, or the error response that answers a bad line."""
    item_id = ""
    try:
        if line is None:
            raise ValueError("the line is over the size limit")
        text = line.decode("utf-8")
        try:
            raw = json.loads(text)
            item_id = str(raw.get("id", "")) if isinstance(raw, dict) else ""
        except ValueError:
            pass
        return json_format.Parse(text, pb.PredictStreamRequest(), ignore_unknown_fields=False)
    except (ValueError, json_format.ParseError) as error:
        detail = "not valid UTF-8" if isinstance(error, UnicodeDecodeError) else str(error)
        status = convert.error_status(grpc.StatusCode.INVALID_ARGUMENT,
                                      f"line {number} is not a PredictStreamRequest in proto3 JSON: {detail}")
        return pb.PredictStreamResponse(id=item_id, error=status)


# Line breaks for str.splitlines() and JavaScript that JSON leaves raw: escaped, so a line is always one line.
_BREAKS = str.maketrans({"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def line_of(response: pb.PredictStreamResponse) -> bytes:
    """One NDJSON line of a response (Chinese text stays readable; only line-breaking characters are escaped)."""
    body = json_format.MessageToDict(response, always_print_fields_with_no_presence=True)
    return (json.dumps(body, ensure_ascii=False, separators=(",", ":")).translate(_BREAKS) + "\n").encode("utf-8")


class Feed:
    """The ASGI app of the NDJSON feed."""

    def __init__(self, api, slot):
        self.api = api
        self.slot = slot  # the serving EngineSlot: a reload swaps the engine under a running feed

    async def __call__(self, scope, receive, send) -> None:
        api, policy = self.api, self.api.policy
        call, headers = api.begin("PredictStream", scope)
        held = False
        policy.metrics.in_flight_streams.inc()
        try:
            try:
                held = api.admit(call, headers, stream=True)
                content_type = dict(headers).get("content-type", "").split(";")[0].strip().lower()
                if content_type not in NDJSON_TYPES:
                    call.code = grpc.StatusCode.INVALID_ARGUMENT
                    await _send_error(send, call, 415, grpc.StatusCode.INVALID_ARGUMENT,
                                      f"content-type must be application/x-ndjson, not {content_type or 'missing'!r}")
                    return
                deadline = api.deadline(headers)
            except Refusal as refusal:
                call.code = refusal.code
                await _send_error(send, call, HTTP_STATUS[refusal.code], refusal.code, refusal.message,
                                  refusal.retry_after_ms)
                return
            except BadRequest as bad:  # a malformed grpc-timeout header
                call.code = bad.code
                await _send_error(send, call, bad.http_status, bad.code, bad.message)
                return
            call.code = await self._stream(call, receive, send, deadline)
        finally:
            api.release(held)
            policy.metrics.in_flight_streams.dec()
            policy.finish(call)

    async def _stream(self, call, receive, send, deadline: float | None) -> grpc.StatusCode:
        """Reads lines and writes answers until every line read is answered; the call's status."""
        loop = asyncio.get_running_loop()
        token = CancelToken()
        slots = asyncio.Semaphore(self.slot.current.limits.max_stream_in_flight)
        finished: asyncio.Queue = asyncio.Queue()
        gone = asyncio.Event()  # the reader saw the client disconnect: nothing more is written
        reader = asyncio.ensure_future(self._read(call, receive, token, slots, finished, loop, deadline, gone))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/x-ndjson"),
                                (REQUEST_ID_KEY.encode(), call.request_id.encode())]})
        answered, total = 0, None
        try:
            while total is None or answered < total:
                item = await finished.get()
                if gone.is_set():
                    return grpc.StatusCode.CANCELLED
                if item[0] is _END:
                    total = item[1]
                    continue
                response = item[0] if len(item) == 1 else item_response(*item)
                answered += 1
                slots.release()
                self.api.policy.stream_item(response)
                await send({"type": "http.response.body", "body": line_of(response), "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            await reader
            return grpc.StatusCode.CANCELLED if gone.is_set() else grpc.StatusCode.OK
        except (OSError, asyncio.CancelledError):  # the client went away while answers were written
            return grpc.StatusCode.CANCELLED
        finally:
            token.cancel()  # queued items of a feed that ended early are skipped
            reader.cancel()

    async def _read(self, call, receive, token, slots, finished, loop, deadline, gone: asyncio.Event) -> None:
        """Submits each line as a slot frees; sets `gone` when the client disconnects before the body ends."""
        limit = 4 * self.slot.current.limits.max_chars_per_text + 1024  # UTF-8 text plus its JSON envelope
        policy = self.api.policy
        splitter, number, submitted = LineSplitter(limit), 0, 0
        try:
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    token.cancel()
                    break
                more = message.get("more_body", False)
                chunk = message.get("body", b"")
                lines = list(splitter.feed(chunk))
                if not more:  # the last line needs no newline
                    lines += splitter.end()
                for line in lines:
                    number += 1
                    if line is not None and not line.strip():
                        continue
                    await slots.acquire()  # holding back here stops reading the body: TCP slows the uploader
                    while (wait := policy.item_wait(call)) > 0:
                        await asyncio.sleep(min(wait, 0.1))
                    submitted += 1
                    self._submit(parse_line(number, line), finished, loop, deadline, token)
        finally:
            finished.put_nowait((_END, submitted))

    def _submit(self, item, finished: asyncio.Queue, loop, deadline, token: CancelToken) -> None:
        """Queues one parsed line; its answer lands in `finished` (on the event loop) when it is done."""
        if isinstance(item, pb.PredictStreamResponse):
            finished.put_nowait((item,))
            return
        started = time.monotonic()
        future = submit_item(self.slot, item, deadline, token)
        future.add_done_callback(
            lambda done, rid=item.id: loop.call_soon_threadsafe(finished.put_nowait, (rid, done, started)))


async def _send_error(send, call, http_status: int, code: grpc.StatusCode, message: str,
                      retry_after_ms: int | None = None) -> None:
    """A whole error response (google.rpc.Status JSON), sent before the feed started."""
    headers = [(b"content-type", b"application/json"), (REQUEST_ID_KEY.encode(), call.request_id.encode())]
    if retry_after_ms is not None:
        headers += [(b"retry-after", str(max(1, -(-retry_after_ms // 1000))).encode()),
                    (b"retry-after-ms", str(retry_after_ms).encode())]
    await send({"type": "http.response.start", "status": http_status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(status_json(code, message)).encode()})
