"""Random-weight StructBERT checkpoints in ModelScope's on-disk layout (for tests and timing)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

SENTIMENT_LABELS = ["负面", "正面"]  # ModelScope sentiment: 0 = negative, 1 = positive
NLI_LABELS = ["entailment", "neutral", "contradiction"]  # entailment 0 / contradiction 2 as the pipeline assumes

# bert-base-chinese keeps [PAD]=0 and [UNK]/[CLS]/[SEP]/[MASK]=100..103; the tiny vocab packs them first.
_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Common CJK characters plus everything the tests feed through the model.
_COMMON_CJK = (
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么"
    "心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样"
    "现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打"
    "便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总"
    "才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王"
    "果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科"
    "怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父"
    "强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商"
    "千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济喜"
    "离虽坏兴系价格质量服务态度差评太棒赞满意失望推荐购买东西快递物流包装便宜贵喜欢讨厌糟糕垃圾退货漂亮舒适"
    "电影剧情演员音乐游戏体育财经科技军事娱乐汽车教育文化家居旅游美食健康篇文章标题运加油机曝光全新突破解放"
    "店般还行非常退货买用评价手机负正"
)
_ASCII = [chr(c) for c in range(33, 127) if not chr(c).isupper()]  # lowercase model: no capitals in vocab
_WORDS = ["good", "bad", "movie", "phone", "the", "is", "very", "not", "ok", "##s", "##ing", "##ed",
          "iphone", "12", "2024", "##5", "##0", "un", "##believ", "##able", "cafe", "…", "—", "“", "”",
          "，", "。", "！", "？", "：", "；", "（", "）", "、", "《", "》"]


def _tiny_vocab() -> list[str]:
    """Specials, ASCII, some English wordpieces, full-width punctuation and common CJK (deduplicated)."""
    seen: dict[str, None] = {}
    for tok in _SPECIALS + _ASCII + _WORDS + list(_COMMON_CJK):
        seen.setdefault(tok, None)
    return list(seen)


def _base_vocab(size: int = 21128) -> list[str]:
    """bert-base-chinese-shaped vocab: [PAD], [unused*], specials at 100..103, then ASCII and CJK."""
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(1, 100)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += [t for t in _ASCII + _WORDS if t not in vocab]
    cp = 0x4E00
    while len(vocab) < size:
        vocab.append(chr(cp))
        cp += 1
    return vocab[:size]


def _arch(vocab_size: int, layers: int, hidden: int, heads: int) -> dict:
    """Architecture block shared by config.json and the weight shapes."""
    return {
        "vocab_size": vocab_size, "hidden_size": hidden, "num_hidden_layers": layers,
        "num_attention_heads": heads, "intermediate_size": 4 * hidden, "hidden_act": "gelu",
        "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
        "pad_token_id": 0, "initializer_range": 0.02, "position_embedding_type": "absolute",
    }


def _normal(gen: torch.Generator, shape: tuple, std: float) -> torch.Tensor:
    """Seeded normal tensor."""
    return torch.randn(*shape, generator=gen) * std


def _layer_norm(sd: dict, name: str, hidden: int, gen: torch.Generator) -> None:
    """LayerNorm near identity, slightly perturbed so it is not a no-op."""
    sd[f"{name}.weight"] = 1.0 + _normal(gen, (hidden,), 0.05)
    sd[f"{name}.bias"] = _normal(gen, (hidden,), 0.05)


def _linear(sd: dict, name: str, n_out: int, n_in: int, gen: torch.Generator, std: float) -> None:
    """Linear weight [out, in] + bias, torch layout."""
    sd[f"{name}.weight"] = _normal(gen, (n_out, n_in), std)
    sd[f"{name}.bias"] = _normal(gen, (n_out,), std)


def _state_dict(arch: dict, num_labels: int, seed: int, std: float) -> dict:
    """Random weights under ModelScope's SbertForSequenceClassification parameter names."""
    gen = torch.Generator().manual_seed(seed)
    h, inter, v = arch["hidden_size"], arch["intermediate_size"], arch["vocab_size"]
    sd: dict = {
        "bert.embeddings.word_embeddings.weight": _normal(gen, (v, h), 0.5),
        "bert.embeddings.position_embeddings.weight": _normal(gen, (arch["max_position_embeddings"], h), 0.1),
        "bert.embeddings.token_type_embeddings.weight": _normal(gen, (arch["type_vocab_size"], h), 0.3),
        # ModelScope's SbertEmbeddings registers position_ids as a persistent buffer, so it is saved.
        "bert.embeddings.position_ids": torch.arange(arch["max_position_embeddings"]).unsqueeze(0),
    }
    _layer_norm(sd, "bert.embeddings.LayerNorm", h, gen)
    for i in range(arch["num_hidden_layers"]):
        p = f"bert.encoder.layer.{i}"
        for part in ("query", "key", "value"):
            _linear(sd, f"{p}.attention.self.{part}", h, h, gen, std)
        _linear(sd, f"{p}.attention.output.dense", h, h, gen, std)
        _layer_norm(sd, f"{p}.attention.output.LayerNorm", h, gen)
        _linear(sd, f"{p}.intermediate.dense", inter, h, gen, std)
        _linear(sd, f"{p}.output.dense", h, inter, gen, std)
        _layer_norm(sd, f"{p}.output.LayerNorm", h, gen)
    _linear(sd, "bert.pooler.dense", h, h, gen, std)
    _linear(sd, "classifier", num_labels, h, gen, 1.0)  # wide logit margins: argmax is meaningful
    return sd


def _configuration(task: str) -> dict:
    """configuration.json as ModelScope's StructBERT text-classification / zero-shot repos ship it."""
    if task == "nli":
        return {"framework": "pytorch", "task": "zero-shot-classification",
                "pipeline": {"type": "zero-shot-classification"},
                "model": {"type": "structbert"},
                "preprocessor": {"type": "zero-shot-cls-tokenizer"}}
    return {"framework": "pytorch", "task": "text-classification",
            "pipeline": {"type": "sentiment-classification"},
            "model": {"type": "structbert"},
            "preprocessor": {"type": "sen-cls-tokenizer", "first_sequence": "first_sequence"}}


def _write_json(path: Path, data: dict) -> None:
    """UTF-8 JSON with real CJK characters (as ModelScope's files are)."""
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")


def _write_labels(folder: Path, labels: list[str], label_source: str, config: dict, configuration: dict) -> None:
    """Puts the true labels in `label_source`; lower-precedence sources get decoys to prove the order."""
    decoys = {str(i): f"LABEL_{i}" for i in range(len(labels))}
    if label_source == "label_mapping":
        _write_json(folder / "label_mapping.json", {lab: i for i, lab in enumerate(labels)})
        configuration["model"]["id2label"] = {str(i): f"cfg_{i}" for i in range(len(labels))}
        config["id2label"] = decoys
    elif label_source == "configuration":
        configuration["model"]["id2label"] = {str(i): lab for i, lab in enumerate(labels)}
        config["id2label"] = decoys
    elif label_source == "config":
        config["id2label"] = {str(i): lab for i, lab in enumerate(labels)}
        config["label2id"] = {lab: i for i, lab in enumerate(labels)}
    else:
        raise ValueError(f"label_source must be label_mapping, configuration or config, not {label_source!r}")


def _write_checkpoint(folder: Path, vocab: list[str], arch: dict, task: str, label_source: str,
                      weights: str, seed: int, std: float) -> Path:
    """Writes config.json, configuration.json, vocab.txt, labels and weights."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    labels = NLI_LABELS if task == "nli" else SENTIMENT_LABELS
    config = {"model_type": "structbert", "architectures": ["SbertForSequenceClassification"],
              **arch, "attention_probs_dropout_prob": 0.1, "hidden_dropout_prob": 0.1,
              "adv_grad_factor": None, "adv_bound": None, "sigma": None, "classifier_dropout": None,
              "directionality": "bidi"}
    configuration = _configuration(task)
    _write_labels(folder, labels, label_source, config, configuration)
    _write_json(folder / "config.json", config)
    _write_json(folder / "configuration.json", configuration)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    sd = _state_dict(arch, len(labels), seed, std)
    if weights == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()}, str(folder / "model.safetensors"))
    elif weights == "bin":
        torch.save(sd, folder / "pytorch_model.bin")
    else:
        raise ValueError(f"weights must be bin or safetensors, not {weights!r}")
    return folder


def make_tiny_structbert_checkpoint(folder: Path, task: str = "sentiment", label_source: str = "label_mapping",
                                    weights: str = "bin", layers: int = 2, hidden: int = 32,
                                    seed: int = 0) -> Path:
    """Tiny random StructBERT (ModelScope layout) for `task` 'sentiment' or 'nli'."""
    if task not in ("sentiment", "nli"):
        raise ValueError(f"task must be sentiment or nli, not {task!r}")
    vocab = _tiny_vocab()
    arch = _arch(len(vocab), layers, hidden, heads=max(1, hidden // 16))
    return _write_checkpoint(folder, vocab, arch, task, label_source, weights, seed, std=0.4)


def make_structbert_base_shape_checkpoint(folder: Path, task: str = "sentiment", seed: int = 0) -> Path:
    """StructBERT-base-shaped (12 x 768, 21128 vocab) random checkpoint; for timing only."""
    vocab = _base_vocab()
    arch = _arch(len(vocab), 12, 768, heads=12)
    return _write_checkpoint(folder, vocab, arch, task, "label_mapping", "bin", seed, std=0.02)
