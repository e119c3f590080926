"""One text, one score: INT8 scores do not depend on batch-mates, padding, or which session ran them."""
import pytest

from tests.conftest import running_server
from tests.tiny_bundles import TINY_NEGATIVE, TINY_POSITIVE

# fitted phrases, unseen ones and long ones, so that batches mix lengths and pad most texts
TEXTS = TINY_POSITIVE + TINY_NEGATIVE + ["这个东西怎么说呢" * k for k in (1, 3, 9)] + ["还行", "一般般吧，不好说"]


def scores_alone_and_batched(client, texts):
    """Each text's scores sent alone (the solo session, engine idle), and all texts in one request (batched)."""
    alone = [client.predict(text)[0].scores for text in texts]
    batched = [p.scores for p in client.predict(texts)]
    return alone, batched


def max_difference(a, b):
    """Largest |score difference| between two answers to the same texts (scores keyed by label)."""
    return max(abs(ra[label] - rb[label]) for ra, rb in zip(a, b, strict=True) for label in ra)


def test_int8_scores_are_the_same_alone_on_the_solo_session_and_inside_mixed_batches(tiny_bundle):
    with running_server(tiny_bundle, cache_size=0, sessions=2, intra_op_threads=1, solo_threads=2,
                        max_texts_per_request=len(TEXTS)) as (running, client):
        alone, batched = scores_alone_and_batched(client, TEXTS)
        stats = running.engine.models[0].executor.stats
        model = {"model": running.engine.models[0].bundle.name}
        exported = running.metrics.registry.get_sample_value("senti_solo_batches_total", model)
    assert stats.solo_batches >= len(TEXTS)  # every lone text ran on the two-thread session
    assert exported == stats.solo_batches  # operators see it too
    assert stats.items - stats.solo_batches == len(TEXTS) and stats.batches - stats.solo_batches < len(TEXTS)
    assert max_difference(alone, batched) <= 1e-6


def test_the_solo_session_can_be_turned_off_and_answers_do_not_change(tiny_bundle):
    with running_server(tiny_bundle, cache_size=0, sessions=2, intra_op_threads=1, solo_threads=1,
                        max_texts_per_request=len(TEXTS)) as (running, client):
        alone, batched = scores_alone_and_batched(client, TEXTS)
        assert running.engine.models[0].solo_runner is None
        assert running.engine.models[0].executor.stats.solo_batches == 0
    with running_server(tiny_bundle, cache_size=0, sessions=2, intra_op_threads=1, solo_threads=2,
                        max_texts_per_request=len(TEXTS)) as (_, client):
        assert max_difference(alone, scores_alone_and_batched(client, TEXTS)[0]) <= 1e-6
    assert max_difference(alone, batched) <= 1e-6
