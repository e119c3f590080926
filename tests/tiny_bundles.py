"""Tiny bundles for server tests: same files and bundle.json schema as the real ones, built in seconds."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

TINY_MAX_LENGTH = 64
TINY_HIDDEN = 32
TINY_SEED = 1234
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]  # ids 0..3, same layout as XLM-R / e5
# The fitted phrases' log-odds are at most this in size (float32 scores carry log-odds up to ~87: past that the
# smaller one underflows to 0), so a test can read a fitted phrase's log-odds back from its scores.
TINY_MAX_LOG_ODDS = 40.0

# ~40 short phrases with obvious polarity; the tiny head is fitted on exactly these, so server tests can rely on
# them being classified as listed here (INT8 activations are scaled per token, so a phrase gets the same embedding
# alone or batched). Nothing is fitted on any other text: its label is whatever the random model gives on the
# machine at hand.
TINY_POSITIVE = [
    "很好", "非常好", "太棒了", "质量很好", "物流很快", "非常满意", "好评", "喜欢", "推荐购买", "服务周到",
    "味道不错", "物美价廉", "超级喜欢", "值得购买", "包装精美", "性价比高", "很满意", "五星好评", "做工精细", "下次还来",
]
TINY_NEGATIVE = [
    "很差", "非常差", "太糟糕了", "质量很差", "物流太慢", "非常失望", "差评", "讨厌", "不推荐", "服务恶劣",
    "味道难吃", "价格太贵", "再也不买", "不值这个价", "包装破损", "用了就坏", "很不满意", "一星差评", "做工粗糙", "退货了",
]


def _vocab() -> list[str]:
    """Specials, printable ASCII, CJK punctuation, full-width forms and all CJK Unified Ideographs."""
    chars = [chr(c) for c in range(0x21, 0x7F)]
    chars += [chr(c) for c in range(0x3000, 0x3040)]
    chars += [chr(c) for c in range(0xFF01, 0xFF5F)]
    chars += [chr(c) for c in range(0x4E00, 0xA000)]
    return SPECIALS + chars


def build_tiny_tokenizer(path: Path) -> Path:
    """Character-level WordLevel tokenizer.json: whitespace dropped, every other char one token, rest <unk>."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors

    vocab = {tok: i for i, tok in enumerate(_vocab())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Split(Regex("."), behavior="isolated"),
    ])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tok.add_special_tokens(SPECIALS)
    tok.enable_truncation(max_length=TINY_MAX_LENGTH)
    tok.save(str(path))
    return path


def _encoder(vocab_size: int):
    """Seeded random 2-layer BERT (hidden 32) wrapped in the real MeanPooledEncoder."""
    import torch
    from transformers import BertConfig, BertModel

    from senti.model.recipes.e5_convert import MeanPooledEncoder

    torch.manual_seed(TINY_SEED)
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=TINY_HIDDEN, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=TINY_MAX_LENGTH, type_vocab_size=2,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=1,
                     initializer_range=0.5,  # larger than BERT's 0.02 so random texts embed far apart
                     attn_implementation="eager")
    return MeanPooledEncoder(BertModel(cfg, add_pooling_layer=False)).eval()


def _fit_head(x: np.ndarray, y: np.ndarray):
    """Small ReLU MLP fitted to 100% on the phrases (class order negative, positive).

    A linear head only reaches ~90% on a random 32-d encoder, so one hidden layer is used; lbfgs converges
    fully on these 80 points (the caller checks it). The fit is seeded but its outcome is not the same on every
    machine (BLAS, scipy, ORT kernels), so only the fitted phrases have known labels.
    """
    from sklearn.neural_network import MLPClassifier

    from senti.model.recipes.train_head import binary_to_two_class

    clf = MLPClassifier(hidden_layer_sizes=(64,), solver="lbfgs", alpha=1e-4, max_iter=5000,
                        random_state=TINY_SEED).fit(x, y)
    layers = [(clf.coefs_[0].T.astype(np.float32), clf.intercepts_[0].astype(np.float32)),
              binary_to_two_class(clf.coefs_[1].T, clf.intercepts_[1])]
    return layers, float(clf.score(x, y))


def build_tiny_embedding_bundle(out_dir: Path) -> Path:
    """Builds a tiny 'embedding' bundle (INT8 ONNX + fp32 ONNX + tokenizer + head + bundle.json) in out_dir."""
    import torch

    from senti.model.recipes.default_bundle import embed_texts, ort_session
    from senti.model.recipes.onnx_export import export_onnx, quantize_int8
    from senti.model.recipes.train_head import head_logits, save_head

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    try:
        tokenizer_path = build_tiny_tokenizer(tmp / "tokenizer.json")
        from tokenizers import Tokenizer
        tokenizer = Tokenizer.from_file(str(tokenizer_path))

        threads = torch.get_num_threads()
        torch.set_num_threads(min(threads, 2))
        try:
            encoder = _encoder(tokenizer.get_vocab_size())
            example = {"input_ids": torch.tensor([[0, 10, 11, 12, 2], [0, 10, 11, 2, 1]]),
                       "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])}
            export_onnx(encoder, example, ["embedding"], tmp / "model.fp32.onnx")
        finally:
            torch.set_num_threads(threads)
        quantize_int8(tmp / "model.fp32.onnx", tmp / "model.onnx")

        # fit on what the server will compute: INT8 embeddings of the prefixed phrases (per-token activation
        # scales: the same whether a phrase is batched or alone)
        texts = TINY_NEGATIVE + TINY_POSITIVE
        y = np.array([0] * len(TINY_NEGATIVE) + [1] * len(TINY_POSITIVE))
        x = embed_texts(ort_session(tmp / "model.onnx"), tokenizer, texts, prefix="query: ", pad_id=1)
        layers, train_acc = _fit_head(x, y)
        if train_acc < 1.0:
            raise RuntimeError(f"tiny head does not separate its phrases (accuracy {train_acc})")
        # Scale the last layer down (if need be) so that no fitted phrase has log-odds beyond TINY_MAX_LOG_ODDS:
        # a positive factor on the final logit changes no label, of any text, and keeps them measurable.
        odds = np.abs(np.diff(head_logits(layers, x), axis=1))
        scale = np.float32(min(1.0, TINY_MAX_LOG_ODDS / float(odds.max())))
        layers[-1] = (layers[-1][0] * scale, layers[-1][1] * scale)
        logits = head_logits(layers, x)
        margin = float(np.abs(logits[:, 1] - logits[:, 0]).min())
        save_head(tmp / "sentiment_head.npz", layers)

        meta = {
            "format_version": 1,
            "name": "tiny-embedding-test",
            "kind": "embedding",
            "tasks": ["sentiment", "zeroshot"],
            "labels": ["negative", "positive"],
            "max_length": TINY_MAX_LENGTH,
            "text_prefix": "query: ",
            "files": {"model": "model.onnx", "model_fp32": "model.fp32.onnx", "tokenizer": "tokenizer.json",
                      "head": "sentiment_head.npz"},
            "quantization": "int8-per-channel-per-token",
            "onnx": {"inputs": ["input_ids", "attention_mask"], "output": "embedding", "dim": TINY_HIDDEN},
            "zeroshot": {"template": "这是一条关于{}的新闻", "temperature": 0.02, "hypothesis_prefix": "query: "},
            "head": {"type": "mlp", "layers": len(layers)},
            "metrics": {"sentiment_heldout_accuracy": train_acc, "heldout_size": 0, "train_size": len(texts),
                        "min_logit_margin": round(margin, 4)},
            "provenance": {"encoder": f"random BertModel (2 layers, hidden {TINY_HIDDEN}, seed {TINY_SEED})",
                           "tokenizer": "character-level WordLevel built with tokenizers",
                           "corpus": "tests/tiny_bundles.py TINY_POSITIVE/TINY_NEGATIVE",
                           "built_with": {"torch": torch.__version__}, "recipe": "tiny-embedding/1",
                           "fingerprint": "tiny", "seed": TINY_SEED, "built_at": "test"},
        }
        (tmp / "bundle.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        tmp.chmod(0o755)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
