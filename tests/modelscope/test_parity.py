"""senti's StructBERT bundles answer what ModelScope's own pipelines answer, for every layout senti supports.

For each tests.structbert_checkpoints CASES layout, ModelScope 1.40.2 runs
`pipeline(Tasks.text_classification | Tasks.zero_shot_classification, model=folder)` in its own venv (conftest.py),
and senti's engine serves the bundle built from the same folder: the fp32 model must give the same labels in the
same order and the same scores within 1e-5; the INT8 model the same top label wherever margins are built into the
checkpoint (every sentiment text, the short zero-shot text), so that this holds on any machine.
SENTI_PARITY_REPORT=FILE writes the table of differences as JSON.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from senti.model.engine import Engine, EngineConfig
from tests.modelscope.conftest import zero_shot_queries
from tests.structbert_checkpoints import CASES, MARGIN_NLI_TEXTS, PARITY_TEXTS

ATOL = 1e-5
LOADERS = {"task-model": "ModelForTextClassification", "sbert": "SbertForSequenceClassification"}
REPORT: dict[str, dict] = {}


def _engine(bundle, variant: str) -> Engine:
    """One session, one input at a time (no batching): the answer of each input on its own."""
    config = EngineConfig(mode="lock", sessions=1, intra_op_threads=2, max_batch_size=1, max_batch_tokens=512,
                          variant=variant, cache_size=0)
    engine = Engine.load([bundle], config)
    engine.warm_up()
    return engine


def _senti_answers(case, variant: str) -> list[dict]:
    """senti's answers in ModelScope's shape: [{"labels": [...], "scores": [...]}], highest score first."""
    engine = _engine(case.bundle, variant)
    try:
        if case.variant.task == "sentiment":
            results, _ = engine.predict(PARITY_TEXTS)
            out = []
            for r in results:
                ranked = sorted(r.scores, key=lambda kv: -kv[1])
                out.append({"labels": [k for k, _ in ranked], "scores": [v for _, v in ranked]})
            return out
        out = []
        for q in zero_shot_queries():
            [result], _ = engine.classify_zero_shot([q["text"]], q["candidate_labels"],
                                                    template=q["hypothesis_template"], multi_label=q["multi_label"])
            out.append({"labels": [k for k, _ in result.labels], "scores": [v for _, v in result.labels]})
        return out
    finally:
        engine.close()


def _modelscope_answers(case) -> list[dict]:
    ms = case.modelscope
    assert "error" not in ms, f"ModelScope could not run {case.name}: {ms.get('traceback', ms.get('error'))}"
    return ms["sentiment"] if case.variant.task == "sentiment" else ms["zero_shot"]


@pytest.fixture(scope="module")
def answers(parity):
    """{case: (ModelScope's, senti fp32, senti INT8)} answers."""
    out = {name: (_modelscope_answers(case), _senti_answers(case, "fp32"), _senti_answers(case, "default"))
           for name, case in parity.cases.items() if "error" not in case.modelscope}
    yield out
    path = os.environ.get("SENTI_PARITY_REPORT")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"versions": parity.versions, "cases": REPORT}, f, ensure_ascii=False, indent=2)


@pytest.mark.parametrize("name", list(CASES))
def test_modelscope_builds_the_layout_as_senti_reads_it(parity, name):
    case = parity.cases[name]
    ms = case.modelscope
    assert "error" not in ms, f"ModelScope could not run {name}: {ms.get('traceback', ms.get('error'))}"
    doc = json.loads((case.bundle / "bundle.json").read_text(encoding="utf-8"))
    layout = doc["provenance"]["modelscope_layout"]
    assert ms["model_class"] == LOADERS[layout["loader"]]
    assert ms["max_length"] == doc["max_length"] == case.variant.effective_max_length


@pytest.mark.parametrize("name", list(CASES))
def test_fp32_bundle_gives_modelscopes_labels_and_scores(answers, name):
    ms, fp32, _ = answers[name]
    assert len(ms) == len(fp32)
    worst = 0.0
    for i, (want, got) in enumerate(zip(ms, fp32)):
        assert got["labels"] == want["labels"], (name, i, want, got)
        diff = float(np.max(np.abs(np.array(got["scores"]) - np.array(want["scores"]))))
        assert diff <= ATOL, (name, i, want, got)
        worst = max(worst, diff)
    REPORT.setdefault(name, {})["fp32_max_abs_diff"] = worst


def _log_odds(answer: dict, labels: list | None = None) -> float:
    """log(score of labels[0] / score of labels[1]), by default the answer's own top two."""
    scores = dict(zip(answer["labels"], answer["scores"]))
    first, second = labels or answer["labels"][:2]
    return float(np.log(scores[first] / scores[second]))


def _has_margins(name: str) -> list[bool]:
    """Which answers of the case come from inputs with margins built in."""
    if CASES[name].task == "sentiment":
        return [True] * len(PARITY_TEXTS)
    return [q["text"] in MARGIN_NLI_TEXTS for q in zero_shot_queries()]


@pytest.mark.parametrize("name", list(CASES))
def test_int8_bundle_gives_modelscopes_top_label(answers, name):
    ms, _, int8 = answers[name]
    agree = [want["labels"][0] == got["labels"][0] for want, got in zip(ms, int8)]
    checked = _has_margins(name)
    REPORT.setdefault(name, {}).update(
        int8_top_label_agreement=f"{sum(a for a, c in zip(agree, checked) if c)}/{sum(checked)}",
        int8_top_label_agreement_without_margins=f"{sum(a for a, c in zip(agree, checked) if not c)}/"
                                                 f"{len(checked) - sum(checked)}")
    # The margin each checked answer has in fp32 (log-odds of its top two), and how far INT8 moved it.
    margins = [_log_odds(w) for w, c in zip(ms, checked) if c and len(w["scores"]) > 1]
    moved = [abs(_log_odds(g, w["labels"][:2]) - _log_odds(w)) for w, g, c in zip(ms, int8, checked)
             if c and len(w["scores"]) > 1]
    REPORT[name].update(min_fp32_margin=round(min(margins), 3), max_int8_margin_shift=round(max(moved), 3))
    assert all(a for a, c in zip(agree, checked) if c), [(w["labels"][0], g["labels"][0]) for w, g in zip(ms, int8)]
    if CASES[name].task == "sentiment":  # both classes occur: the agreement is not vacuous
        assert len({w["labels"][0] for w in ms}) == 2
