"""`senti-model adapt` on tiny bundles: a loadable bundle with metrics and provenance, exact errors, a disjoint split."""
import json
import shutil

import numpy as np
import pytest

from senti.model.bundle import load_bundle
from senti.model.engine import Engine, EngineConfig
from senti.model.recipes import cli
from senti.model.recipes.adapt import adapt_bundle, read_examples, split_examples
from senti.model.recipes.provenance import sha256_file
from tests.tiny_bundles import TINY_NEGATIVE, TINY_POSITIVE

SUFFIXES = ("", "！", "。", "啊")
# 80 examples of the user's own (the tiny head's phrases with punctuation) and a small corpus of other texts
USER = [(p + s, "positive") for p in TINY_POSITIVE for s in SUFFIXES[:2]] + \
       [(n + s, "negative") for n in TINY_NEGATIVE for s in SUFFIXES[:2]]
CORPUS = [(p + s, "positive") for p in TINY_POSITIVE for s in SUFFIXES[2:]] + \
         [(n + s, "negative") for n in TINY_NEGATIVE for s in SUFFIXES[2:]] + \
         [(USER[0][0], "positive")]  # also one of the user's: never trained on from the corpus


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def ngram_base(tiny_bundle, tmp_path_factory):
    """The tiny bundle plus a character n-gram head, like the default bundle's."""
    from senti.model.recipes.train_head import labels_to_index
    from senti.model.recipes.train_ngrams import fit_ngrams, save_ngram_head

    base = tmp_path_factory.mktemp("ngram-base") / "tiny"
    shutil.copytree(tiny_bundle, base)
    texts = TINY_NEGATIVE + TINY_POSITIVE
    model = fit_ngrams(texts, labels_to_index(["negative"] * 20 + ["positive"] * 20), seed=1)
    save_ngram_head(base / "sentiment_ngrams.npz", model, 1.0)
    meta = json.loads((base / "bundle.json").read_text(encoding="utf-8"))
    meta["files"]["ngram_head"] = "sentiment_ngrams.npz"
    (base / "bundle.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    return base


@pytest.fixture(scope="module")
def train_file(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("user") / "mine.jsonl", [{"text": t, "label": lab} for t, lab in USER])


def test_adapt_mix_builds_a_bundle_the_server_loads_with_metrics_and_provenance(ngram_base, train_file, tmp_path):
    out = adapt_bundle(ngram_base, train_file, tmp_path / "adapted", mode="mix", seed=7, user_weight=5.0,
                       corpus=CORPUS, corpus_source="test corpus", progress=False)
    meta = json.loads((out / "bundle.json").read_text(encoding="utf-8"))
    assert meta["name"] == "tiny-embedding-test-adapted"
    m = meta["metrics"]
    assert m["user_heldout_size"] == m["heldout_size"] == 16 and m["user_train_size"] == 64
    assert m["corpus_texts_dropped_as_user_texts"] == 1 and m["corpus_train_size"] == len(CORPUS) - 1
    assert m["train_size"] == m["user_train_size"] + m["corpus_train_size"]  # the held-out 16 are in no fit
    assert 0.0 <= m["adapt_heldout_accuracy"] <= 1.0 and 0.0 <= m["base_heldout_accuracy"] <= 1.0
    assert m["sentiment_heldout_accuracy"] == m["adapt_heldout_accuracy"]
    p = meta["provenance"]
    assert p["base"]["bundle_json_sha256"] == sha256_file(ngram_base / "bundle.json")
    assert p["base"]["name"] == "tiny-embedding-test"
    assert p["train_file"]["sha256"] == sha256_file(train_file)
    assert (p["mode"], p["seed"], p["heldout_fraction"], p["user_weight"], p["corpus"]) == \
           ("mix", 7, 0.2, 5.0, "test corpus")
    # the encoder is the base bundle's own files (hard links here), the heads are new
    for role in ("model", "model_fp32", "tokenizer"):
        assert (out / meta["files"][role]).stat().st_ino == (ngram_base / meta["files"][role]).stat().st_ino
    assert (out / "sentiment_head.npz").read_bytes() != (ngram_base / "sentiment_head.npz").read_bytes()
    assert sorted(q.name for q in tmp_path.iterdir()) == ["adapted"]  # no temporary folder left

    bundle = load_bundle(out)
    assert bundle.kind == "embedding" and bundle.labels == ("negative", "positive")
    engine = Engine.load([out], EngineConfig(sessions=1, intra_op_threads=1, max_batch_size=4))
    try:
        engine.warm_up()
        results, _ = engine.predict(["很好", "很差"])
        assert [r.label in ("negative", "positive") for r in results] == [True, True]
        [info] = engine.describe()
        assert info.name == "tiny-embedding-test-adapted" and info.metrics["adapt_heldout_accuracy"] >= 0
    finally:
        engine.close()


def test_the_heldout_split_is_disjoint_stratified_and_seeded(train_file):
    items, lines, duplicates = read_examples(train_file)
    assert (len(items), lines, duplicates) == (80, 80, 0)
    first = split_examples(items, 0.2, seed=3, mode="mix")
    again = split_examples(items, 0.2, seed=3, mode="mix")
    other = split_examples(items, 0.2, seed=4, mode="mix")
    assert first.train == again.train and first.heldout == again.heldout and first.heldout != other.heldout
    assert not {t for t, _ in first.train} & {t for t, _ in first.heldout}
    assert sorted(first.train + first.heldout) == sorted(items)
    assert sorted(lab for _, lab in first.heldout) == ["negative"] * 8 + ["positive"] * 8


def test_replace_mode_from_the_command_line(tiny_bundle, train_file, tmp_path, capsys):
    assert cli.main(["--quiet", "adapt", "--train", str(train_file), "--out", str(tmp_path / "b"),
                     "--base", str(tiny_bundle), "--mode", "replace", "--heldout-fraction", "0.25"]) == 0
    printed = capsys.readouterr().out
    assert "held-out accuracy" in printed and "on 20 of your examples never trained on" in printed
    meta = json.loads((tmp_path / "b" / "bundle.json").read_text(encoding="utf-8"))
    assert meta["metrics"]["corpus_train_size"] == 0 and meta["metrics"]["train_size"] == 60
    assert meta["provenance"]["mode"] == "replace" and meta["provenance"]["corpus"] is None
    assert "ngram_head" not in meta["files"]  # the base has none
    load_bundle(tmp_path / "b")


BAD = [
    ("missing", None, [], "{f}: no such file"),
    ("json", '{"text": "很好", "label": "positive"}\n\n{"text": "很差", label}\n', [],
     "{f}, line 3: not valid JSON (Expecting property name enclosed in double quotes)"),
    ("shape", '["很好", "positive"]\n', [], '{f}, line 1: expected an object with string fields "text" and "label"'),
    ("empty", '{"text": "很好", "label": "positive"}\n{"text": "  ", "label": "negative"}\n', [],
     "{f}, line 2: the text is empty"),
    ("labels", '{"text": "很好", "label": "pos"}\n{"text": "一般", "label": "neutral"}\n'
               '{"text": "还行", "label": "neutral"}\n', [],
     "{f}: unknown labels 'pos' (line 1), 'neutral' (lines 2, 3); the bundle's labels are negative, positive"),
    ("conflict", '{"text": "很好", "label": "positive"}\n{"text": "很好 ", "label": "negative"}\n', [],
     "{f}, line 2: the same text as line 1 with another label ('negative' vs 'positive')"),
    ("one", '{"text": "很好", "label": "positive"}\n{"text": "不错", "label": "positive"}\n'
            '{"text": "很差", "label": "negative"}\n', [],
     "{f}: label 'negative' has 1 example; every label needs at least 2 (one to train on, one to hold out)"),
    ("split", "".join(json.dumps({"text": t, "label": lab}, ensure_ascii=False) + "\n"
                      for t, lab in [("很好", "positive"), ("不错", "positive"), ("很差", "negative"),
                                     ("难吃", "negative")]), [],
     "{f}: too few examples for a held-out split of 0.2: label 'negative' has 2, which leaves none of them held "
     "out (add examples or change --heldout-fraction)"),
    ("replace", "".join(json.dumps({"text": t, "label": lab}, ensure_ascii=False) + "\n" for t, lab in USER[:5] + USER[-5:]),
     ["--mode", "replace", "--heldout-fraction", "0.5"],
     "{f}: --mode replace trains on your examples alone and needs at least 4 training examples of each label; "
     "label 'negative' has 3 after the held-out split (add examples or use --mode mix)"),
    ("fraction", "".join(json.dumps({"text": t, "label": lab}, ensure_ascii=False) + "\n" for t, lab in USER),
     ["--heldout-fraction", "1"], "--heldout-fraction must be between 0 and 1 (exclusive), got 1"),
]


@pytest.mark.parametrize("name,content,extra,message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_clear_line_and_exit_1(tiny_bundle, tmp_path, capsys, name, content, extra, message):
    path = tmp_path / f"{name}.jsonl"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    code = cli.main(["--quiet", "adapt", "--train", str(path), "--out", str(tmp_path / "out"),
                     "--base", str(tiny_bundle), *extra])
    captured = capsys.readouterr()
    assert code == 1 and captured.err == f"senti-model: {message.format(f=path)}\n" and captured.out == ""
    assert not (tmp_path / "out").exists()


def test_the_base_must_be_an_embedding_bundle_and_not_the_output(tiny_bundle, train_file, tmp_path, capsys):
    assert cli.main(["--quiet", "adapt", "--train", str(train_file), "--out", str(tiny_bundle),
                     "--base", str(tiny_bundle)]) == 1
    assert capsys.readouterr().err == (f"senti-model: --out {tiny_bundle.resolve()} must be a folder of its own, "
                                       f"not the base bundle {tiny_bundle.resolve()} or inside it\n")
    assert cli.main(["--quiet", "adapt", "--train", str(train_file), "--out", str(tmp_path / "o"),
                     "--base", str(tmp_path / "nothing")]) == 1
    assert "senti-model: no bundle at" in capsys.readouterr().err


def test_the_user_weight_moves_the_head(ngram_base, train_file, tmp_path):
    """Up-weighting the user's examples is a real knob: a different weight gives a different head."""
    heads = []
    for w in (1.0, 50.0):
        out = adapt_bundle(ngram_base, train_file, tmp_path / f"w{w:g}", user_weight=w, corpus=CORPUS, progress=False)
        with np.load(out / "sentiment_head.npz") as z:
            heads.append(z["w0"].copy())
    assert not np.allclose(heads[0], heads[1])
