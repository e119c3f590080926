"""`python -m loadtest.bench`: every scenario in one run on this machine, so the ratios between them hold.

Starts each server itself on 127.0.0.1 (one at a time, never two at once), drives it with an asyncio gRPC
client from this process, samples the server's CPU and memory, writes JSON and PNG plots to
loadtest/results/<run>/ and prints a summary table. Every loop is bounded in count and in time.

Scenarios (--scenarios, comma-separated; default all):
  engine    the raw engine, no server: ONNX Runtime on the same texts (batch 1 and length-grouped batch 32)
  variants  engine variants (fp32, ORT transformer fusion, thread layouts) and the physical bound
  modes     the server in batched, per-thread and lock modes, and the seed design (lock, batch 1, pad 512),
            closed loop at concurrency 1 and 32
  sweep     Predict at fixed arrival rates up to saturation (batched mode)
  stream    PredictStream feeding N comments on one stream
  zeroshot  ClassifyZeroShot with 2, 5, 10 and 20 labels
  cache     result cache on vs off at the corpus's own repeat rate
  mlserver  MLServer 1.7.1 serving the same bundle (its own venv, --mlserver-venv), with and without adaptive
            batching, closed loop at concurrency 1 and 32; skipped with a note when that venv is missing
  tools     short smoke runs of the k6 script and the locust user against the batched server
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

import grpc
import psutil

from protos import senti_pb2 as pb
from protos import senti_pb2_grpc

from . import common
from .report import COLUMNS, headline, summary_rows

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "loadtest" / "results"
ALL_SCENARIOS = ("engine", "variants", "modes", "mlserver", "sweep", "stream", "zeroshot", "cache", "tools")
SEED = 20261121
ZEROSHOT_LABELS = ["物流", "质量", "价格", "服务", "包装", "外观", "尺寸", "颜色", "味道", "电池",
                   "屏幕", "声音", "安装", "售后", "做工", "材质", "性能", "气味", "配件", "发票"]
SWEEP_FRACTIONS = (0.1, 0.25, 0.5, 0.7, 0.8, 0.87, 0.93, 1.0, 1.1, 1.25)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- servers ------------------------------------------------------------------------------------------------

@dataclass
class Server:
    """A senti server subprocess on 127.0.0.1, with its readiness time and a resource sampler."""

    name: str
    proc: subprocess.Popen
    port: int
    ready_s: float
    log_path: Path
    process_group: bool = False
    ps: psutil.Process = field(init=False)
    peak_rss_mb: float = 0.0

    def __post_init__(self):
        self.ps = psutil.Process(self.proc.pid)
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self.ps, *self.ps.children(recursive=True)]
        except psutil.Error:
            return []

    def rss_mb(self) -> float:
        """Resident memory of the server and its worker processes (MLServer has some)."""
        total = 0
        for p in self._tree():
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total / 2 ** 20

    def cpu_s(self) -> float:
        total = 0.0
        for p in self._tree():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.peak_rss_mb = max(self.peak_rss_mb, self.rss_mb())

    def stop(self) -> None:
        self._stop.set()
        if self.proc.poll() is None:
            if self.process_group:  # our own session: the server and the workers it spawned
                os.killpg(self.proc.pid, signal.SIGTERM)
            else:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                if self.process_group:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait(5)


def start_server(name: str, bundle: Path, out_dir: Path, args: list[str], timeout: float = 120) -> Server:
    """Spawns `python -m server` on 127.0.0.1:0; ready when health says SERVING (time from spawn)."""
    log_path = out_dir / f"server-{name}.log"
    command = [sys.executable, "-m", "server", "--bundle", str(bundle), "--host", "127.0.0.1", "--port", "0",
               "--log-level", "INFO", "--metrics-port", "0", *args]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    started = time.monotonic()
    with open(log_path, "wb") as sink:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, env=env)
    port = None
    deadline = started + timeout
    while port is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server {name} did not start; see {log_path}:\n{log_path.read_text()[-2000:]}")
        text = log_path.read_text(errors="replace")
        # JSON logs ({"msg": "listening", "port": N}) or text logs ("listening on HOST:PORT")
        match = re.search(r'"msg": "listening".*?"port": (\d+)', text) or re.search(r"listening on \S+:(\d+)", text)
        if match:
            port = int(match.group(1))
        else:
            time.sleep(0.02)
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"server {name} never became SERVING; see {log_path}")
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                pass
            time.sleep(0.02)
    ready = time.monotonic() - started
    log(f"server {name} ({' '.join(args) or 'defaults'}) SERVING on :{port} after {ready:.2f} s")
    return Server(name, proc, port, ready, log_path)


# -- load drivers -------------------------------------------------------------------------------------------

@dataclass
class Record:
    """One answered (or failed) call, times in seconds from the scenario's start."""

    sent: float
    latency: float
    items: int = 1
    code: str = "OK"
    queue_us: int = 0
    inference_us: int = 0
    server_us: int = 0
    batch_size: int = 0
    cache_hits: int = 0


def _meta(record: Record, md: pb.Metadata) -> Record:
    record.queue_us, record.inference_us, record.server_us = md.queue_us, md.inference_us, md.total_us
    record.batch_size, record.cache_hits = md.batch_size, md.cache_hits
    return record


Call = Callable[[senti_pb2_grpc.SentiServiceStub, int, float], Awaitable[Record]]


def predict_call(texts: list[str], timeout: float = 30.0) -> Call:
    """Predict with one text per request, texts taken in order (index wraps)."""
    async def call(stub, index: int, sent: float) -> Record:
        loop = asyncio.get_running_loop()
        try:
            response = await stub.Predict(pb.PredictRequest(texts=[texts[index % len(texts)]]), timeout=timeout)
        except grpc.aio.AioRpcError as error:
            return Record(sent, loop.time() - sent, code=error.code().name)
        return _meta(Record(sent, loop.time() - sent), response.metadata)
    return call


def zeroshot_call(texts: list[str], labels: list[str], timeout: float = 30.0) -> Call:
    async def call(stub, index: int, sent: float) -> Record:
        loop = asyncio.get_running_loop()
        request = pb.ClassifyZeroShotRequest(texts=[texts[index % len(texts)]], labels=labels)
        try:
            response = await stub.ClassifyZeroShot(request, timeout=timeout)
        except grpc.aio.AioRpcError as error:
            return Record(sent, loop.time() - sent, code=error.code().name)
        return _meta(Record(sent, loop.time() - sent), response.metadata)
    return call


def _channel(target: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 << 20)])


async def closed_loop(target: str, call: Call, concurrency: int, seconds: float, warmup: float,
                      max_requests: int, stub_factory=None) -> tuple[list[Record], float]:
    """`concurrency` callers each send, wait, send again; calls that finish after `warmup` within `seconds` count."""
    async with _channel(target) as channel:
        stub = (stub_factory or senti_pb2_grpc.SentiServiceStub)(channel)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        start, end = t0 + warmup, t0 + warmup + seconds
        counter = iter(range(max_requests))
        records: list[Record] = []

        async def worker():
            for index in counter:
                if loop.time() >= end:
                    return
                record = await call(stub, index, loop.time())
                # throughput and latency of the calls that finished inside the window (steady state)
                if start <= record.sent + record.latency <= end:
                    records.append(record)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        window = min(end, loop.time()) - start
        for r in records:
            r.sent -= start
        return records, max(window, 1e-9)


async def open_loop(target: str, call: Call, rate: float, seconds: float, first_index: int,
                    max_in_flight: int = 4096) -> tuple[list[Record], float, int]:
    """Sends at fixed times (constant arrival rate); latency counts from the scheduled time (no coordinated
    omission). Returns records, the elapsed window and the number of sends skipped for the in-flight cap."""
    async with _channel(target) as channel:
        stub = senti_pb2_grpc.SentiServiceStub(channel)
        loop = asyncio.get_running_loop()
        offsets = common.arrival_offsets(rate, seconds)
        t0 = loop.time() + 0.05
        records: list[Record] = []
        tasks = set()
        skipped = 0

        async def one(index, scheduled):
            records.append(await call(stub, index, scheduled))

        for i, offset in enumerate(offsets):
            scheduled = t0 + offset
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(tasks) >= max_in_flight:
                skipped += 1
                continue
            task = asyncio.create_task(one(first_index + i, scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=60)
        window = max(seconds, max((r.sent + r.latency for r in records), default=t0) - t0)
        for r in records:
            r.sent -= t0
        return records, window, skipped


async def stream_run(target: str, texts: list[str], count: int, timeout: float, window: int = 128) -> dict:
    """One PredictStream carrying `count` comments. The feeder keeps at most `window` comments unanswered (as a
    well-behaved producer does; the server holds 64 in flight by default), so the per-item latency measured
    from hand-off to answer is the wait for the model, not the time the item sat in the client's own buffers.
    The server's own per-item time (metadata total_us, from taking the item off the stream) is reported too."""
    async with _channel(target) as channel:
        stub = senti_pb2_grpc.SentiServiceStub(channel)
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(window)
        sent: dict[str, float] = {}
        latencies: list[float] = []
        server: list[float] = []
        errors = 0
        batch_sizes: list[int] = []

        async def requests():
            for i in range(count):
                await slots.acquire()
                sent[str(i)] = loop.time()
                yield pb.PredictStreamRequest(id=str(i), text=texts[i % len(texts)])

        t0 = loop.time()
        call = stub.PredictStream(requests(), timeout=timeout)
        async for response in call:
            latencies.append(loop.time() - sent[response.id])
            slots.release()
            if response.HasField("error"):
                errors += 1
            else:
                batch_sizes.append(response.metadata.batch_size)
                server.append(response.metadata.total_us / 1e6)
        wall = loop.time() - t0
        return {"comments": count, "answered": len(latencies), "errors": errors, "seconds": round(wall, 2),
                "client_window": window, "comments_per_s": round(len(latencies) / wall, 1),
                "latency_ms": common.summarize(latencies, 1000), "server_item_ms": common.summarize(server, 1000),
                "batch_size_hist": common.histogram(batch_sizes)}


def result_of(records: list[Record], window: float, server: Server | None, cpu_s: float,
              client_cpu_s: float, offered: float | None = None) -> dict:
    """Throughput, latency percentiles, server-side timing, batch sizes and resources of one run."""
    ok = [r for r in records if r.code == "OK"]
    errors: dict[str, int] = {}
    for r in records:
        if r.code != "OK":
            errors[r.code] = errors.get(r.code, 0) + 1
    latency = common.summarize([r.latency for r in ok], 1000)
    out = {
        "requests": len(records), "ok": len(ok), "errors": errors, "seconds": round(window, 2),
        "texts_per_s": round(sum(r.items for r in ok) / window, 1),
        "latency_ms": latency,
        "queue_ms": common.summarize([r.queue_us / 1000 for r in ok]),
        "inference_ms": common.summarize([r.inference_us / 1000 for r in ok]),
        "server_ms": common.summarize([r.server_us / 1000 for r in ok]),
        "batch_size_hist": common.histogram(r.batch_size for r in ok),
        "cache_hits": sum(r.cache_hits for r in ok),
        "server_cpu_cores": round(cpu_s / window, 2),
        "client_cpu_cores": round(client_cpu_s / window, 2),
    }
    if offered is not None:
        out["offered"] = offered
    if server is not None:
        out["server_rss_mb"] = round(server.rss_mb(), 1)
    return out


def measured(server: Server, runner: Callable[[], Awaitable]) -> tuple:
    """Runs a driver coroutine, returning its result with the server's and this process's CPU seconds."""
    me = psutil.Process()
    cpu0, mine0 = server.cpu_s(), sum(me.cpu_times()[:2])
    result = asyncio.run(runner())
    return result, server.cpu_s() - cpu0, sum(me.cpu_times()[:2]) - mine0


# -- the bench ----------------------------------------------------------------------------------------------

class Bench:
    """Holds the run's settings, texts and results; each scenario method fills `self.results`."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.quick = args.quick
        self.bundle = args.bundle.resolve()
        self.out = args.out
        self.out.mkdir(parents=True, exist_ok=True)
        self.seconds = args.seconds or (4.0 if self.quick else 10.0)
        self.warmup = 0.5 if self.quick else 1.0
        unique = common.load_corpus(dedupe=True)
        self.raw_lines = common.load_corpus(dedupe=False)
        self.texts = common.shuffled(unique, SEED)
        from .engines import bundle_tokenizer
        from model.bundle import load_bundle
        self.tokenizer = bundle_tokenizer(load_bundle(self.bundle))
        self.results: dict = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
                              "corpus": {"raw_lines": len(self.raw_lines), "unique": len(unique)}}

    def lengths(self, texts: list[str]) -> dict:
        """Token lengths (with the model prefix and special tokens) of what a scenario sends."""
        return common.length_stats([e.length for e in self.tokenizer.encode_batch(list(texts))])

    def save(self) -> None:
        (self.out / "results.json").write_text(json.dumps(self.results, indent=1, ensure_ascii=False),
                                               encoding="utf-8")

    # engine and variants run in a subprocess of their own
    def engine(self, variants: bool) -> None:
        sample = self.texts[: 600 if self.quick else 1500]
        path = self.out / "engine-texts.json"
        path.write_text(json.dumps(sample, ensure_ascii=False), encoding="utf-8")
        out = self.out / "engine.json"
        command = [sys.executable, "-m", "loadtest.engines", "--bundle", str(self.bundle), "--texts", str(path),
                   "--limit", "60", "--out", str(out),
                   "--cache-dir", str(RESULTS / "variants")]
        if variants:
            command.append("--variants")
        log(f"raw engine{' + variants' if variants else ''} on {len(sample)} texts (subprocess)")
        with open(self.out / "engine.log", "wb") as sink:
            subprocess.run(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, check=True, timeout=900)
        engine = json.loads(out.read_text(encoding="utf-8"))
        engine["lengths"] = self.lengths(sample)
        self.results["engine"] = engine

    def paired_ceiling(self, tag: str) -> float:
        """The raw ceiling measured again right before a server scenario (600 texts, a few seconds): on a shared
        machine the load of other work drifts, and a ratio to an adjacent measurement drifts much less."""
        path = self.out / "ceiling-texts.json"
        if not path.exists():
            path.write_text(json.dumps(self.texts[:600], ensure_ascii=False), encoding="utf-8")
        out = self.out / f"ceiling-{tag}.json"
        subprocess.run([sys.executable, "-m", "loadtest.engines", "--bundle", str(self.bundle), "--texts", str(path),
                        "--out", str(out), "--ceiling-only", "--limit", "30"], cwd=ROOT, check=True, timeout=120,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        value = json.loads(out.read_text(encoding="utf-8"))["runs"][0]["texts_per_s"]
        log(f"paired ceiling before {tag}: {value} texts/s")
        return value

    def ceiling(self) -> float:
        runs = self.results.get("engine", {}).get("runs", [])
        grouped = [r["texts_per_s"] for r in runs if r["variant"] == "int8" and r["batching"] == "grouped 32"]
        return max(grouped, default=self.args.ceiling)

    def closed_loops(self, name: str, server, entry: dict, make_call: Callable[[], Call],
                     stub_factory=None) -> dict[int, int]:
        """Closed loops at concurrency 1 and 32 against one server, into entry['c1'] and entry['c32'];
        returns how many requests each sent."""
        sent = {}
        for concurrency in (1, 32):
            (records, window), cpu, mine = measured(server, lambda: closed_loop(
                server.target, make_call(), concurrency, self.seconds, self.warmup, 200_000,
                stub_factory=stub_factory))
            result = entry[f"c{concurrency}"] = result_of(records, window, server, cpu, mine)
            sent[concurrency] = len(records)
            log(f"{name} c{concurrency}: {result['texts_per_s']} texts/s, p99 {result['latency_ms'].get('p99')} ms")
        entry["peak_rss_mb"] = round(server.peak_rss_mb, 1)
        return sent

    def modes(self) -> None:
        configs = [("batched", []), ("per-thread", ["--mode", "per-thread"]), ("lock", ["--mode", "lock"]),
                   ("seed", ["--mode", "lock", "--pad-to-max-length"])]
        if not self.quick:  # a candidate default: each batch worker's session may use every core
            configs.insert(1, ("batched-2x2", ["--intra-op-threads", str(os.cpu_count() or 1)]))
        out = {}
        for name, extra in configs:
            paired = self.paired_ceiling(name) if self.args.paired else None
            server = start_server(name, self.bundle, self.out, ["--cache-size", "0", *extra])
            try:
                entry = {"paired_ceiling": paired, "args": extra, "ready_s": round(server.ready_s, 2), "rss_idle_mb": round(server.rss_mb(), 1),
                         "load_avg_before": os.getloadavg()[0]}
                sent = self.closed_loops(name, server, entry, lambda: predict_call(self.texts, timeout=120))
                for concurrency, count in sent.items():
                    entry[f"c{concurrency}"]["lengths"] = self.lengths(
                        common.take_distinct(self.texts, 0, min(len(self.texts), max(1, count))))
            finally:
                server.stop()
            out[name] = entry
            self.results["modes"] = out
            self.save()

    def sweep(self) -> None:
        ceiling = self.ceiling()
        fractions = (0.25, 0.6, 0.87, 1.0, 1.15) if self.quick else SWEEP_FRACTIONS
        rates = [round(f * ceiling) for f in fractions]
        seconds = 3.0 if self.quick else 8.0
        paired = self.paired_ceiling("sweep") if self.args.paired else None
        server = start_server("sweep", self.bundle, self.out, ["--cache-size", "0"])
        steps = []
        first = 0
        try:
            steps_left = 16
            while rates and steps_left:
                rate = rates.pop(0)
                steps_left -= 1
                call = predict_call(self.texts, timeout=5.0)
                (records, window, skipped), cpu, mine = measured(
                    server, lambda: open_loop(server.target, call, rate, seconds, first))
                step = result_of(records, window, server, cpu, mine, offered=rate)
                step.update(achieved=step["texts_per_s"], p99_ms=step["latency_ms"].get("p99", float("inf")),
                            errors=sum(step["errors"].values()) + skipped, skipped=skipped)
                steps.append(step)
                first += len(records)
                log(f"sweep {rate}/s: achieved {step['achieved']}, p50 {step['latency_ms'].get('p50')} "
                    f"p99 {step['p99_ms']} ms, errors {step['errors']}")
                time.sleep(1.0)  # let the queue drain
                if step["achieved"] < 0.85 * rate or step["p99_ms"] > 3000:
                    break  # saturated: the next step would only grow the queue
                if not rates:  # not saturated yet (the machine got quieter than at the ceiling's measurement)
                    rates.append(round(rate * 1.12))
            self.results["sweep"] = {
                "mode": "batched", "arrivals": "constant", "seconds_per_step": seconds, "ceiling": ceiling,
                "paired_ceiling": paired,
                "steps": steps, "lengths": self.lengths(common.take_distinct(self.texts, 0, min(first, len(self.texts)))),
                "max_rate_p99_100ms": common.max_rate_within(steps, 100),
                "max_rate_p99_500ms": common.max_rate_within(steps, 500),
                "ready_s": round(server.ready_s, 2), "peak_rss_mb": round(server.peak_rss_mb, 1)}
        finally:
            server.stop()
        self.save()

    def stream(self) -> None:
        count = self.args.stream_items or (2000 if self.quick else 10_000)
        server = start_server("stream", self.bundle, self.out, ["--cache-size", "0"])
        try:
            texts = self.texts
            result, cpu, mine = measured(server, lambda: stream_run(server.target, texts, count, timeout=300))
            result.update(server_cpu_cores=round(cpu / result["seconds"], 2),
                          client_cpu_cores=round(mine / result["seconds"], 2), peak_rss_mb=round(server.peak_rss_mb, 1),
                          lengths=self.lengths(common.take_distinct(texts, 0, min(count, len(texts)))),
                          distinct_texts=min(count, len(texts)))
            log(f"stream {count}: {result['comments_per_s']} comments/s, p99 {result['latency_ms'].get('p99')} ms")
        finally:
            server.stop()
        self.results["stream"] = result
        self.save()

    def zeroshot(self) -> None:
        server = start_server("zeroshot", self.bundle, self.out, ["--cache-size", "0"])
        out = {}
        start = 0
        try:
            for k in (2, 5, 10, 20):
                labels = ZEROSHOT_LABELS[:k]
                texts = self.texts[start:] + self.texts[:start]
                call = zeroshot_call(texts, labels)
                (records, window), cpu, mine = measured(server, lambda: closed_loop(
                    server.target, call, 32, self.seconds, self.warmup, max_requests=200_000))
                entry = result_of(records, window, server, cpu, mine)
                entry["ms_per_text"] = round(1000 / max(entry["texts_per_s"], 1e-9), 2)
                entry["cpu_ms_per_text"] = round(1000 * cpu / max(1, entry["ok"]), 2)
                entry["lengths"] = self.lengths(texts[: max(1, len(records))])
                out[str(k)] = entry
                start += len(records) + 32
                log(f"zero-shot {k} labels: {entry['texts_per_s']} texts/s, {entry['ms_per_text']} ms/text")
        finally:
            server.stop()
        base = out["2"]["texts_per_s"]
        self.results["zeroshot"] = {"concurrency": 32, "labels": out,
                                    "slowdown_20_vs_2": round(base / max(out["20"]["texts_per_s"], 1e-9), 2)}
        self.save()

    def cache(self) -> None:
        rate = self.args.repeat_rate
        if rate is None:  # the corpus's own: share of lines that repeat an earlier one
            rate = common.repeat_fraction(self.raw_lines)
        n = 4000 if self.quick else 12000
        workload = common.repeat_workload(self.texts, n, rate, SEED)
        out = {"repeat_rate": round(rate, 3), "sent_repeat_fraction": round(common.repeat_fraction(workload), 3)}
        for name, size in (("off", "0"), ("on", "10000")):
            server = start_server(f"cache-{name}", self.bundle, self.out, ["--cache-size", size])
            try:
                (records, window), cpu, mine = measured(server, lambda: closed_loop(
                    server.target, predict_call(workload), 32, self.seconds, 0.0, max_requests=n))
                entry = result_of(records, window, server, cpu, mine)
                entry["hit_rate"] = round(entry["cache_hits"] / max(1, entry["ok"]), 3)
                out[name] = entry
                log(f"cache {name}: {entry['texts_per_s']} texts/s, hit rate {entry['hit_rate']}")
            finally:
                server.stop()
        out["lengths"] = self.lengths(workload)
        out["speedup"] = round(out["on"]["texts_per_s"] / max(out["off"]["texts_per_s"], 1e-9), 2)
        self.results["cache"] = out
        self.save()

    def mlserver(self) -> None:
        """MLServer 1.7.1 as a peer: same bundle, same texts, V2 gRPC ModelInfer with one text per request."""
        from . import peers
        venv = self.args.mlserver_venv
        if not (venv / "bin" / "mlserver").exists():
            self.results["mlserver"] = {"skipped": f"no MLServer venv at {venv}; see loadtest/mlserver/requirements.txt"}
            log(self.results["mlserver"]["skipped"])
            return
        out = {}
        for name, batching in (("mlserver-adaptive", {"max_batch_size": 32, "max_batch_time": 0.01}),
                               ("mlserver-no-batching", {})):
            paired = self.paired_ceiling(name) if self.args.paired else None
            server = peers.start_mlserver(name, venv, self.bundle, self.out, batching, ROOT, log)
            try:
                entry = {"paired_ceiling": paired, "settings": batching or {"max_batch_size": 1}, "ready_s": round(server.ready_s, 2),
                         "load_avg_before": os.getloadavg()[0]}
                v2 = peers.v2_module(venv)
                self.closed_loops(name, server, entry, lambda: peers.v2_call(v2, self.texts),
                                  stub_factory=peers.V2Stub.factory(v2))
            finally:
                server.stop()
            out[name] = entry
            self.results["mlserver"] = out
            self.save()

    def tools(self) -> None:
        """Short runs of the k6 script and the locust user, to prove they work against a live server."""
        from . import tools
        server = start_server("tools", self.bundle, self.out, ["--cache-size", "0"])
        try:
            self.results["tools"] = tools.smoke(server.target, self.texts[:2000], self.out,
                                                seconds=3 if self.quick else 8)
        finally:
            server.stop()
        self.save()


def wait_for_quiet(limit_s: float, threshold: float = 0.6) -> None:
    """Waits (at most limit_s) until the 1-minute load average drops under `threshold`: other work on the
    machine lowers every absolute number (the ratios within the run much less)."""
    deadline = time.monotonic() + limit_s
    while os.getloadavg()[0] >= threshold and time.monotonic() < deadline:
        log(f"load average {os.getloadavg()[0]:.2f}: waiting for the machine to be quiet")
        time.sleep(10)


def machine() -> dict:
    flags = ""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
        flags = re.search(r"flags\s*:\s*(.*)", cpuinfo).group(1)
    except (OSError, AttributeError):
        model = None
    import onnxruntime
    return {"cpu": model.group(1) if model else platform.processor(), "cores": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2 ** 30, 1),
            "isa": [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8")
                    if f in flags.split()],
            "python": platform.python_version(), "onnxruntime": onnxruntime.__version__, "grpcio": grpc.__version__,
            "kernel": platform.release(), "load_avg_at_start": os.getloadavg()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=ROOT / "bundles" / "e5-small")
    parser.add_argument("--scenarios", default=",".join(ALL_SCENARIOS),
                        help=f"comma-separated subset of: {', '.join(ALL_SCENARIOS)}")
    parser.add_argument("--quick", action="store_true", help="short steps and fewer items (about 3 minutes)")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per closed-loop run")
    parser.add_argument("--stream-items", type=int, default=None, help="comments on the stream (default 10000)")
    parser.add_argument("--repeat-rate", type=float, default=None,
                        help="cache scenario repeat rate (default: the corpus's own duplicate share)")
    parser.add_argument("--ceiling", type=float, default=280.0,
                        help="raw-engine texts/s to scale the sweep by when the engine scenario is not run")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default loadtest/results/<time>)")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--no-paired", dest="paired", action="store_false",
                        help="skip re-measuring the raw ceiling right before each server scenario")
    parser.add_argument("--mlserver-venv", type=Path, default=Path.home() / ".cache" / "senti-bench" / "mlserver-venv",
                        help="virtual environment with loadtest/mlserver/requirements.txt installed")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                        help="first wait up to S seconds for the 1-minute load average to drop under 0.6")
    parser.add_argument("--export-texts", type=Path, default=None, metavar="PATH",
                        help="write the shuffled unique review texts (JSON list, for k6), then exit")
    parser.add_argument("--export-ghz", type=Path, default=None, metavar="PATH",
                        help="write them as PredictRequest messages (ghz data file), then exit")
    args = parser.parse_args(argv)
    unknown = set(args.scenarios.split(",")) - set(ALL_SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if args.out is None:
        args.out = RESULTS / time.strftime("%Y%m%d-%H%M%S")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.export_texts or args.export_ghz) and not (args.bundle / "bundle.json").is_file():
        print(f"no bundle at {args.bundle}: run `make model` first", file=sys.stderr)
        return 2
    if args.export_texts or args.export_ghz:
        texts = common.shuffled(common.load_corpus(dedupe=True), SEED)
        for path, data in ((args.export_texts, texts), (args.export_ghz, [{"texts": [t]} for t in texts])):
            if path:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
                print(f"{len(texts)} texts -> {path}")
        return 0
    scenarios = args.scenarios.split(",")
    wait_for_quiet(args.wait_quiet)
    bench = Bench(args)
    started = time.monotonic()
    log(f"results in {args.out}; scenarios: {', '.join(scenarios)}{' (quick)' if args.quick else ''}")
    if "engine" in scenarios or "variants" in scenarios:
        bench.engine(variants="variants" in scenarios)
        bench.save()
    for name in ("modes", "mlserver", "sweep", "stream", "zeroshot", "cache", "tools"):
        if name in scenarios:
            getattr(bench, name)()
    bench.results["bench_seconds"] = round(time.monotonic() - started, 1)
    bench.results["machine"]["load_avg_at_end"] = os.getloadavg()
    rows = summary_rows(bench.results)
    bench.results["summary"] = rows
    bench.save()
    if not args.no_plots:
        from . import plots
        bench.results["plots"] = [os.path.relpath(p, ROOT) for p in plots.draw(bench.results, args.out)]
        bench.save()
    print()
    print(common.format_table(rows, COLUMNS))
    print()
    for line in headline(bench.results):
        print(line)
    latest = RESULTS / "latest"
    if args.out.parent == RESULTS:
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(args.out.name)
    log(f"done in {bench.results['bench_seconds']} s: {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
