"""PredictStream's handler logic without a network: bounded in-flight items, every id answered once."""
import threading
from concurrent.futures import Future

from senti.model.errors import InvalidInput
from senti.model.validation import Limits
from senti.v1 import senti_pb2 as pb
from senti.server.handlers import Stream
from senti.model.types import Sentiment


class InstantEngine:
    """Answers each item at once; an item whose text is 'bad' fails."""

    def __init__(self, in_flight: int):
        self.limits = Limits(max_stream_in_flight=in_flight)

    def submit_sentiment(self, text, **kwargs):
        future = Future()
        if text == "bad":
            future.set_exception(InvalidInput("bad item"))
        else:
            future.set_result(Sentiment("positive", 0.9, (("negative", 0.1), ("positive", 0.9)), False, 3))
        return future


def test_reader_never_runs_ahead_of_the_consumer_by_more_than_the_bound():
    in_flight, total = 4, 200
    consumed = [0]
    worst = [0]
    lock = threading.Lock()

    def requests():
        for i in range(total):
            with lock:
                worst[0] = max(worst[0], i - consumed[0])
            yield pb.PredictStreamRequest(id=str(i), text="bad" if i % 10 == 0 else "好")

    stream = Stream(InstantEngine(in_flight), deadline=None)
    reader = threading.Thread(target=stream.read, args=(requests(),))
    reader.start()
    answers = []
    for response in stream.answers():
        answers.append(response)
        with lock:
            consumed[0] += 1
    reader.join(5)
    assert sorted(int(a.id) for a in answers) == list(range(total))
    assert sum(a.HasField("error") for a in answers) == total // 10
    # One item may be read while the reader waits for a slot, and one slot is freed just before a yield.
    assert worst[0] <= in_flight + 2


class StuckEngine(InstantEngine):
    """Never answers: every item stays in flight."""

    def submit_sentiment(self, text, **kwargs):
        return Future()


def test_ending_the_rpc_releases_a_reader_waiting_for_a_slot():
    stream = Stream(StuckEngine(2), deadline=None)
    pulled = []

    def endless():
        while True:
            pulled.append(1)
            yield pb.PredictStreamRequest(id=str(len(pulled)), text="好")

    reader = threading.Thread(target=stream.read, args=(endless(),))
    reader.start()
    stream.stop()  # what the transport does when the call ends (gRPC: its termination callback)
    reader.join(5)
    assert not reader.is_alive()
