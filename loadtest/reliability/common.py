"""Shared parts of the bounded reliability load scripts: a server subprocess, texts, open-loop load."""
import os
import random
import threading
import time
from dataclasses import dataclass, field

import grpc

from senti.v1 import senti_pb2 as pb
from senti.v1 import senti_pb2_grpc

from ..serverproc import server_process

FRAGMENTS = ["这家店的服务", "物流速度", "包装", "质量", "味道", "客服态度", "价格", "做工", "屏幕", "电池",
             "非常好", "太差了", "一般般", "还可以", "让人失望", "超出预期", "性价比很高", "不会再买了", "值得推荐",
             "有点贵", "发货很快", "和描述不符", "下次还来", "完全不能用", "挺满意的", "，", "。", "！", "但是", "而且"]


def texts(n: int, seed: int = 0) -> list[str]:
    """n mostly distinct review-like texts of 8-20 fragments (about 20-60 tokens), so the cache rarely hits."""
    rng = random.Random(seed)
    return ["".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(8, 20))) for _ in range(n)]


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds process `pid` (all its threads) has used, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server(*args: str, bundle: str = "bundles/e5-small"):
    """`python -m senti.server` on 127.0.0.1, port chosen by the server; yields (process, port). Stopped on exit."""
    return server_process(bundle, *args)


@dataclass
class Outcomes:
    """Latency (s) per status code name, thread-safe."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, code: str, seconds: float) -> None:
        with self.lock:
            self.latencies.setdefault(code, []).append(seconds)

    def count(self, code: str | None = None) -> int:
        with self.lock:
            return (sum(len(v) for v in self.latencies.values()) if code is None
                    else len(self.latencies.get(code, [])))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(outcomes: Outcomes) -> dict:
    out = {}
    for code, values in sorted(outcomes.latencies.items()):
        out[code] = {"n": len(values), "p50_ms": round(percentile(values, 0.5) * 1e3, 2),
                     "p99_ms": round(percentile(values, 0.99) * 1e3, 2),
                     "max_ms": round(max(values) * 1e3, 2)}
    return out


def capacity(port: int, seconds: float = 8.0, concurrency: int = 32) -> float:
    """Closed-loop throughput (requests/s, one text each) with `concurrency` callers for `seconds`."""
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = senti_pb2_grpc.SentiServiceStub(channel)
    pool = texts(20000, seed=1)
    done = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def worker(k: int) -> None:
        i = k
        while time.monotonic() < stop_at:
            try:
                stub.Predict(pb.PredictRequest(texts=[pool[i % len(pool)]]), timeout=30)
                with lock:
                    done[0] += 1
            except grpc.RpcError:
                pass
            i += concurrency

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(concurrency)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    channel.close()
    return done[0] / (time.monotonic() - started)


SHED = "SHED_BY_CLIENT"  # the outcome of a call the client's AdaptiveThrottle did not send


def open_loop(port: int, rate: float, seconds: float, outcomes: Outcomes, seed: int = 2,
              timeout: float = 10.0, max_outstanding: int = 5000, throttle=None) -> int:
    """Sends Predict calls (one text each) at a fixed arrival rate for `seconds`, whatever the answers;
    returns how many arrived. Bounded by count (rate x seconds) and by time. With `throttle` (the SDK's
    AdaptiveThrottle, as SentiClient applies it) a call it sheds is recorded as SHED and never sent."""
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = senti_pb2_grpc.SentiServiceStub(channel)
    pool = texts(50000, seed=seed)
    total = int(rate * seconds)
    outstanding = threading.Semaphore(max_outstanding)
    started = time.monotonic()
    sent = 0

    def record(future, t0):
        try:
            future.result()
            code = "OK"
        except grpc.RpcError as error:
            code = error.code().name
        if throttle is not None and code != "RESOURCE_EXHAUSTED":
            throttle.accepted()
        outcomes.add(code, time.monotonic() - t0)
        outstanding.release()

    for i in range(total):
        due = started + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if throttle is not None and not throttle.allow():
            outcomes.add(SHED, 0.0)
            sent += 1
            continue
        if not outstanding.acquire(timeout=timeout):
            break
        t0 = time.monotonic()
        future = stub.Predict.future(pb.PredictRequest(texts=[pool[i % len(pool)]]), timeout=timeout)
        future.add_done_callback(lambda f, t0=t0: record(f, t0))
        sent += 1
    deadline = time.monotonic() + timeout + 5
    while outcomes.count() < sent and time.monotonic() < deadline:
        time.sleep(0.05)
    channel.close()
    return sent
