"""A stream survives the loss of its replica: the SDK reopens it on the other one and resends what was unanswered."""
import urllib.request
from collections import Counter

import pytest

from loadtest.serverproc import server_process
from senti.client import SentiClient

ITEMS = 10_000
KILL_AFTER = 2_000


def streams_open(proc) -> float:
    """The replica's own count of open PredictStreams, from its /metrics."""
    url = f"http://127.0.0.1:{proc.listening['metrics_port']}/metrics"
    for line in urllib.request.urlopen(url, timeout=10).read().decode().splitlines():
        if line.startswith("senti_in_flight_streams "):
            return float(line.split()[1])
    raise AssertionError("senti_in_flight_streams is not exported")


@pytest.mark.slow
def test_every_id_is_answered_once_when_the_streams_replica_is_killed(tiny_bundle):
    args = ("--metrics-port", "0", "--metrics-host", "127.0.0.1", "--max-stream-in-flight", "32")
    with server_process(tiny_bundle, *args) as (first, first_port), \
            server_process(tiny_bundle, *args) as (second, second_port):
        replicas = {first_port: first, second_port: second}
        answers: Counter = Counter()
        killed = None
        with SentiClient([f"127.0.0.1:{port}" for port in replicas], timeout=300) as client:
            for result in client.stream((str(i), f"第{i}条评论，物流很快") for i in range(ITEMS)):
                assert result.ok, (result.id, result.error_code, result.error_message)
                answers[result.id] += 1
                if killed is None and sum(answers.values()) == KILL_AFTER:
                    [killed] = [proc for proc in replicas.values() if streams_open(proc) == 1]
                    killed.kill()  # SIGKILL: no drain, the stream just breaks
                    killed.wait(30)
        assert killed is not None and killed.returncode == -9
        survivor = next(proc for proc in replicas.values() if proc is not killed)
        assert survivor.poll() is None
        assert answers == Counter({str(i): 1 for i in range(ITEMS)})
