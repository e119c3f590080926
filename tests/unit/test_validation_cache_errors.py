"""Request checks with their exact messages, the LRU cache, the error table and cancel tokens."""
from concurrent.futures import Future

import grpc
import pytest

from senti.model import errors
from senti.model.cache import LruCache
from senti.model.futures import CancelToken, gather, then, wait
from senti.model.validation import Limits, check_examples, check_labels, check_template, check_texts
from senti.server.errors import INTERNAL_MESSAGE, status_of

LIMITS = Limits(max_texts_per_request=3, max_labels_per_request=3, max_chars_per_text=10)


@pytest.mark.parametrize("texts, message", [
    ([], "texts is empty; send at least one text"),
    (["a", "b", "c", "d"], "texts has 4 items; the limit is 3"),
    (["ok", "   "], r"texts\[1\] is empty or only whitespace"),
    (["ok", "x" * 11], r"texts\[1\] has 11 characters; the limit is 10"),
])
def test_bad_texts(texts, message):
    with pytest.raises(errors.InvalidInput, match=message):
        check_texts(texts, LIMITS)


EXAMPLE_LIMITS = Limits(max_chars_per_text=10, max_examples_per_label=2, max_examples_per_request=3)


@pytest.mark.parametrize("examples, message", [
    ([("c", ["x"])], r"examples\[0\].label 'c' is not one of labels"),
    ([("a", ["x"]), ("a", ["y"])], r"examples\[1\].label 'a' repeats examples\[0\].label"),
    ([("a", [])], r"examples\[0\] \('a'\) has no texts; give at least one or leave the label out"),
    ([("a", ["x", "y", "z"])], r"examples\[0\] \('a'\) has 3 texts; the limit is 2 per label"),
    ([("a", ["x", "y"]), ("b", ["z", "w"])], "examples have 4 texts in all; the limit is 3 per request"),
    ([("b", ["ok", " "])], r"examples\[0\].texts\[1\] is empty or only whitespace"),
    ([("b", ["x" * 11])], r"examples\[0\].texts\[0\] has 11 characters; the limit is 10"),
])
def test_bad_examples(examples, message):
    with pytest.raises(errors.InvalidInput, match=f"^{message}$"):
        check_examples(examples, ["a", "b"], EXAMPLE_LIMITS)


def test_examples_of_some_labels_are_valid():
    check_examples([("b", ["x", "y"]), ("a", ["z"])], ["a", "b", "c"], EXAMPLE_LIMITS)
    check_examples([], ["a"], EXAMPLE_LIMITS)


def test_control_characters_and_emoji_are_valid_text():
    check_texts(["\x00\x07好😀", "\u200b\ufeff"], LIMITS)


@pytest.mark.parametrize("labels, message", [
    ([], "labels is empty"),
    (["a", "b", "c", "d"], "labels has 4 items; the limit is 3"),
    (["体育", " "], r"labels\[1\] is empty"),
    (["体育", "财经", "体育"], r"labels\[2\] '体育' repeats labels\[0\]"),
])
def test_bad_labels(labels, message):
    with pytest.raises(errors.InvalidInput, match=message):
        check_labels(labels, LIMITS)


@pytest.mark.parametrize("template", ["没有占位符", "{}{}", "{0}是{}", "{label}"])
def test_bad_templates(template):
    with pytest.raises(errors.InvalidInput, match="hypothesis_template"):
        check_template(template)


def test_good_template():
    check_template("这是一条关于{}的新闻")


def test_lru_evicts_least_recent_and_counts():
    cache = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c")) == (1, 3)
    assert (cache.hits, cache.misses) == (3, 1)
    disabled = LruCache(0)
    disabled.put("a", 1)
    assert disabled.get("a") is None


@pytest.mark.parametrize("error, code", [
    (errors.InvalidInput("x"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.Overloaded("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.NotReady("x"), grpc.StatusCode.UNAVAILABLE),
    (errors.DeadlineExceeded("x"), grpc.StatusCode.DEADLINE_EXCEEDED),
    (errors.Cancelled("x"), grpc.StatusCode.CANCELLED),
    (errors.Unsupported("x"), grpc.StatusCode.FAILED_PRECONDITION),
])
def test_error_table(error, code):
    assert status_of(error) == (code, "x")


def test_unexpected_errors_are_internal_without_details():
    assert status_of(KeyError("secret path /etc")) == (grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)


def test_cancel_token_cancels_queued_futures_and_later_ones():
    token = CancelToken()
    queued = Future()
    token.track(queued)
    token.cancel()
    assert queued.cancelled()
    late = Future()
    token.track(late)
    assert late.cancelled()


def test_then_and_gather_turn_cancellation_into_cancelled():
    source = Future()
    chained = then(source, lambda v: v + 1)
    source.cancel()
    with pytest.raises(errors.Cancelled):
        wait(chained, None)
    a, b = Future(), Future()
    both = gather([a, b], sum)
    a.set_result(1)
    b.set_result(2)
    assert wait(both, None) == 3


def test_wait_past_deadline_raises_deadline_exceeded():
    import time
    with pytest.raises(errors.DeadlineExceeded):
        wait(Future(), time.monotonic() + 0.01)
