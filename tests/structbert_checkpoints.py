"""Random-weight StructBERT checkpoints in the on-disk layouts ModelScope's pipelines load (tests and timing).

A checkpoint is described by a `Variant`: which configuration.json `model` block (the backbone/head task model
or `structbert`), which attribute the backbone's keys live under and which field names it, where the labels are
(with decoys in the places ModelScope reads later, so that only the right precedence finds the real ones), the
preprocessor's max_length, and so on. `CASES` names every variant that the parity tests run through ModelScope's
own pipeline (tests/modelscope) and the recipe tests build; `REAL_REPOS` are the layouts the hub's repos most
likely have. Margins can be built into a checkpoint for given inputs (`make_checkpoint(..., margins=...)`) so
that INT8 top-label checks hold on any machine.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
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


@dataclass(frozen=True)
class Variant:
    """One checkpoint layout (see the module docstring)."""

    task: str = "sentiment"  # "sentiment" or "nli"
    # configuration.json model block: "backbone-head" (type text-classification with backbone and head blocks),
    # "text-classification" (type only: ModelScope reads the backbone and head from config.json) or "structbert".
    model: str = "backbone-head"
    prefix: str = "encoder"  # attribute the backbone's weights are saved under
    # backbone-head: the backbone field that names the prefix ("prefix" or "base_model_prefix"); the other models
    # name it with config.json base_model_prefix (written whenever prefix != "bert").
    prefix_field: str = "prefix"
    head_keys: str = "head"  # task models: "head" -> head.classifier.*, "bare" -> classifier.*
    # where the true labels are: preprocessor, preprocessor+label_mapping, preprocessor-first, label_mapping,
    # configuration, config, num_labels
    labels: str = "preprocessor"
    config_json: bool = True
    weights: str = "bin"  # "bin" (pytorch_model.bin) or "safetensors"
    max_length: int | None = None  # configuration.json preprocessor(.val).max_length
    sequence_length: int | None = None  # configuration.json preprocessor(.val).sequence_length
    # architecture fields the configuration.json block (backbone, or model for structbert) sets over config.json
    overrides: tuple = ()
    about: str = ""

    @property
    def task_model(self) -> bool:
        """ModelScope builds ModelForTextClassification (backbone + head) for it."""
        return self.model in ("backbone-head", "text-classification")

    def effective_arch(self, arch: dict) -> dict:
        """The architecture ModelScope builds (the configuration.json block's fields win)."""
        return {**arch, **dict(self.overrides)}

    @property
    def effective_max_length(self) -> int:
        """Truncation length of ModelScope's pipelines for it (max_length, else the pipeline's 512)."""
        return self.max_length if self.max_length is not None else 512


SENTIMENT_MAIN = Variant(about="backbone/head configuration.json, encoder.* + head.classifier.*, train/val "
                               "preprocessor with label2id (what ModelScope's trainer saves)")
NLI_MAIN = Variant(task="nli", model="structbert", prefix="bert", labels="config",
                   about="model.type structbert, bert.* + classifier.*, config.json id2label")
REAL_REPOS = {"sentiment": SENTIMENT_MAIN, "nli": NLI_MAIN}
CASES: dict[str, Variant] = {
    "sentiment-backbone-head": SENTIMENT_MAIN,
    "sentiment-backbone-head-classifier": replace(SENTIMENT_MAIN, head_keys="bare",
                                                  about="backbone/head with bare classifier.* keys"),
    "sentiment-backbone-head-no-config-json": replace(
        SENTIMENT_MAIN, config_json=False, labels="preprocessor+label_mapping",
        about="backbone/head, no config.json (label_mapping.json: ModelForTextClassification counts labels there)"),
    "sentiment-backbone-base-model-prefix": replace(SENTIMENT_MAIN, prefix_field="base_model_prefix",
                                                    about="backbone block names its prefix base_model_prefix"),
    "sentiment-config-json-base-model-prefix": replace(
        SENTIMENT_MAIN, model="text-classification",
        about="model.type text-classification alone: backbone and head from config.json, base_model_prefix there"),
    "sentiment-preprocessor-labels-first": replace(
        SENTIMENT_MAIN, labels="preprocessor-first",
        about="preprocessor.val.label2id beats label_mapping.json, preprocessor.train and config.json"),
    "sentiment-max-length-128": replace(SENTIMENT_MAIN, max_length=128, sequence_length=64,
                                        about="preprocessor.val max_length 128 (sequence_length 64 is replaced)"),
    "sentiment-sequence-length-replaced": replace(SENTIMENT_MAIN, sequence_length=64,
                                                  about="preprocessor.val sequence_length 64 only: the pipeline's "
                                                        "512 replaces it"),
    "sentiment-architecture-precedence": replace(
        SENTIMENT_MAIN, overrides=(("num_attention_heads", 4), ("layer_norm_eps", 1e-5)),
        about="backbone block's num_attention_heads/layer_norm_eps over config.json's"),
    "sentiment-structbert-label-mapping": replace(
        SENTIMENT_MAIN, model="structbert", prefix="bert", labels="label_mapping", weights="safetensors",
        about="model.type structbert, bert.* keys, label_mapping.json, model.safetensors"),
    "nli-structbert": NLI_MAIN,
    "nli-num-labels": replace(NLI_MAIN, labels="num_labels", about="config.json num_labels 3 only (LABEL_0..2)"),
    "nli-config-json-base-model-prefix": replace(NLI_MAIN, prefix="encoder",
                                                 about="config.json base_model_prefix encoder, encoder.* keys"),
    "nli-safetensors": replace(NLI_MAIN, weights="safetensors", about="model.safetensors"),
    "nli-max-length-128": replace(NLI_MAIN, max_length=128, about="preprocessor max_length 128"),
    "nli-model-block-overrides": replace(NLI_MAIN, overrides=(("num_attention_heads", 4),),
                                         about="configuration.json model.num_attention_heads over config.json's"),
}

# Inputs the parity tests feed both ModelScope and senti; margins are built into the checkpoints for them.
PARITY_TEXTS = [
    "这家店的服务态度很好，物流也快！",
    "质量太差了，非常失望。退货！！",
    "The iPhone 12 is VERY good, 2024年买的",
    "电影剧情一般般……演员还行",
    "喜欢😀😀 不推荐🙃",
    "（全新）《文章标题》：科技、汽车；  教育\t文化\n",
    "unbelievable movies! [SEP] 好",
    "服务很好，" * 40,  # 200 tokens: cut at 128 where the preprocessor says so
    "质量太差了退货。" * 80,  # 640 tokens: cut at 512
]
PARITY_TEMPLATE = "这篇文章的标题是{}"
PARITY_CANDIDATES = ["文化", "体育", "娱乐", "财经", "汽车", "军事"]
# The first text gets margins built in; the second (~220 tokens with its hypothesis) probes truncation, and its
# hypotheses move its pooled output so little that margins for it would need a huge classifier: fp32 checks only.
PARITY_NLI_TEXTS = ["全新突破 解放军运20版空中加油机曝光", "国足赢了比赛，" * 30]
MARGIN_NLI_TEXTS = PARITY_NLI_TEXTS[:1]
SENTIMENT_MARGIN = 4.0  # logit difference built in for each PARITY_TEXTS item (INT8 moves logits by ~1)
NLI_MARGIN = 2.0  # entailment logit up by this for each margin text's top candidate, down for the others
NLI_GAP = 5.0  # entailment - contradiction: +this for the top candidate, about -this for the others


def parity_pairs(texts: list[str] | None = None) -> list[tuple[str, str]]:
    """(text, hypothesis) for every text (PARITY_NLI_TEXTS by default) x PARITY_CANDIDATES, text-major."""
    return [(t, PARITY_TEMPLATE.format(c)) for t in (texts or PARITY_NLI_TEXTS) for c in PARITY_CANDIDATES]


def margin_inputs(task: str) -> list:
    """The inputs whose margins the parity checkpoints have built in."""
    return PARITY_TEXTS if task == "sentiment" else parity_pairs(MARGIN_NLI_TEXTS)


# ----------------------------------------------------------------------------- files


def _write_json(path: Path, data: dict) -> None:
    """UTF-8 JSON with real CJK characters (as ModelScope's files are)."""
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")


def _dropouts() -> dict:
    return {"attention_probs_dropout_prob": 0.1, "hidden_dropout_prob": 0.1}


def _preprocessor(v: Variant, label2id: dict | None, train_label2id: dict | None) -> dict:
    """configuration.json preprocessor block: train/val for task models (as ModelScope's trainer writes it)."""
    lengths = {k: val for k, val in (("max_length", v.max_length), ("sequence_length", v.sequence_length))
               if val is not None}
    if v.task == "nli":
        return {"type": "zero-shot-cls-tokenizer", **lengths}
    if not v.task_model:
        return {"type": "sen-cls-tokenizer", "first_sequence": "first_sequence", **lengths,
                **({"label2id": label2id} if label2id else {})}
    common = {"type": "sen-cls-tokenizer", "first_sequence": "sentence", "label": "label", **lengths}
    return {"train": {**common, "mode": "train", **({"label2id": train_label2id} if train_label2id else {})},
            "val": {**common, "mode": "eval", **({"label2id": label2id} if label2id else {})}}


def _files(v: Variant, arch: dict, labels: list[str]) -> tuple[dict, dict | None, dict | None]:
    """(configuration.json, config.json or None, label_mapping.json or None) for the variant."""
    true = {lab: i for i, lab in enumerate(labels)}
    decoy = {f"LABEL_{i}": i for i in range(len(labels))}
    inverse = lambda m: {str(i): lab for lab, i in m.items()}  # noqa: E731
    config = {"model_type": "structbert", "architectures": ["SbertForSequenceClassification"], **arch,
              **_dropouts(), "adv_grad_factor": None, "adv_bound": None, "sigma": None,
              "classifier_dropout": None, "directionality": "bidi"}
    if v.prefix != "bert" and (v.model != "backbone-head"):
        config["base_model_prefix"] = v.prefix
    mapping = None
    model_labels: dict = {}
    pre_true = pre_train = None
    if v.labels in ("preprocessor", "preprocessor+label_mapping"):
        pre_true = pre_train = true
        config.update(id2label=inverse(true), label2id=true)
        mapping = true if v.labels == "preprocessor+label_mapping" else None
    elif v.labels == "preprocessor-first":
        pre_true, pre_train = true, {f"train_{i}": i for i in range(len(labels))}
        mapping = {["negative", "positive", "other"][i] if i < 3 else f"x{i}": i for i in range(len(labels))}
        config.update(id2label=inverse(decoy), label2id=decoy)
    elif v.labels == "label_mapping":
        mapping = true
        model_labels = {"id2label": {str(i): f"cfg_{i}" for i in range(len(labels))}}
        config.update(id2label=inverse(decoy), label2id=decoy)
    elif v.labels == "configuration":
        model_labels = {"id2label": inverse(true)}
        config.update(id2label=inverse(decoy), label2id=decoy)
    elif v.labels == "config":
        config.update(id2label=inverse(true), label2id=true)
    elif v.labels == "num_labels":
        config["num_labels"] = len(labels)
    else:
        raise ValueError(f"unknown labels {v.labels!r}")
    overrides = dict(v.overrides)
    if v.model == "backbone-head":
        backbone = {"type": "structbert", v.prefix_field: v.prefix, **arch, **_dropouts(), **overrides}
        model = {"type": "text-classification", "backbone": backbone,
                 "head": {"type": "text-classification", "hidden_size": arch["hidden_size"],
                          "hidden_dropout_prob": 0.1}, **model_labels}
    elif v.model == "text-classification":
        if overrides:
            raise ValueError("overrides need a configuration.json block that holds the architecture")
        model = {"type": "text-classification", **model_labels}
    elif v.model == "structbert":
        model = {"type": "structbert", **model_labels, **overrides}
    else:
        raise ValueError(f"unknown model {v.model!r}")
    nli = v.task == "nli"
    configuration = {
        "framework": "pytorch",
        "task": "zero-shot-classification" if nli else "text-classification",
        "pipeline": {"type": "zero-shot-classification" if nli else
                     ("text-classification" if v.task_model else "sentiment-classification")},
        "model": model,
        "preprocessor": _preprocessor(v, pre_true, pre_train),
    }
    return configuration, (config if v.config_json else None), mapping


# ----------------------------------------------------------------------------- margins


def _tokenizer(vocab: list[str], max_length: int):
    """A fast tokenizer equal to ModelScope's BertTokenizer for `vocab` (senti's recipe, tested against it)."""
    from tokenizers import Tokenizer

    from senti.model.recipes.structbert import build_tokenizer_json

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
        path = build_tokenizer_json(Path(tmp) / "vocab.txt", Path(tmp) / "tokenizer.json", max_length)
        return Tokenizer.from_file(str(path))


def pooled_outputs(sd: dict, arch: dict, vocab: list[str], inputs: list, max_length: int) -> np.ndarray:
    """float64 pooled outputs (the classifier's input) of the backbone in `sd` (bert.* names) for `inputs`."""
    from transformers import BertConfig, BertModel

    config = BertConfig(**{k: arch[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers",
                                                "num_attention_heads", "intermediate_size", "hidden_act",
                                                "max_position_embeddings", "type_vocab_size", "layer_norm_eps",
                                                "pad_token_id")},
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    config._attn_implementation = "eager"
    model = BertModel(config).eval()
    model.load_state_dict({k[len("bert."):]: v for k, v in sd.items() if k.startswith("bert.")}, strict=False)
    tok = _tokenizer(vocab, max_length)
    enc = tok.encode_batch([tuple(x) if isinstance(x, (tuple, list)) else x for x in inputs])
    feed = {name: torch.tensor([getattr(e, attr) for e in enc])
            for name, attr in (("input_ids", "ids"), ("attention_mask", "attention_mask"),
                               ("token_type_ids", "type_ids"))}
    with torch.no_grad():
        return model(**feed).pooler_output.double().numpy()


def _shift_rows(sd: dict, pooled: np.ndarray, shifts: dict[int, np.ndarray]) -> None:
    """Adds w . pooled + b to classifier row r, (w, b) the least-norm solution of w . pooled_i + b = shifts[r][i]
    (fewer inputs than pooled dimensions: exact), so that logit r of input i moves by exactly shifts[r][i]."""
    design = np.hstack([pooled, np.ones((len(pooled), 1))])
    weight, bias = sd["classifier.weight"].double(), sd["classifier.bias"].double()
    for row, shift in shifts.items():
        solution = np.linalg.lstsq(design, np.asarray(shift, dtype=np.float64), rcond=None)[0]
        weight[row] += torch.from_numpy(solution[:-1])
        bias[row] += float(solution[-1])
    sd["classifier.weight"], sd["classifier.bias"] = weight.float(), bias.float()


def build_margins(sd: dict, arch: dict, vocab: list[str], task: str, inputs: list, max_length: int,
                  per_text: int = len(PARITY_CANDIDATES)) -> None:
    """Moves the classifier so that the answers for `inputs` have wide margins, by construction.

    sentiment (`inputs` texts): input i is sent to class i % 2 (both classes occur) with a logit difference of
    exactly SENTIMENT_MARGIN. nli (`inputs` text-major (text, hypothesis) pairs of len(PARITY_CANDIDATES) per
    text): each text's top candidate by the random model's entailment logit gets entailment +NLI_MARGIN and
    contradiction -NLI_MARGIN, its other candidates the opposite (their order kept), so single- and multi-label
    agree on the top candidate with a wide lead."""
    pooled = pooled_outputs(sd, arch, vocab, inputs, max_length)
    logits = pooled @ sd["classifier.weight"].double().numpy().T + sd["classifier.bias"].double().numpy()
    if task == "sentiment":
        want = np.where(np.arange(len(inputs)) % 2 == 1, SENTIMENT_MARGIN, -SENTIMENT_MARGIN)
        move = (want - (logits[:, 1] - logits[:, 0])) / 2
        _shift_rows(sd, pooled, {0: -move, 1: move})
        return
    per = per_text
    entail = logits[:, 0].reshape(-1, per)
    top = (np.arange(per)[None, :] == entail.argmax(axis=1)[:, None]).reshape(-1)
    move_e = np.where(top, NLI_MARGIN, -NLI_MARGIN)
    # entailment - contradiction, centred per text (a shift common to a text's pairs costs little weight), then
    # +NLI_GAP for the top candidate and -NLI_GAP for the others: multi-label scores near 1 and 0, far from ties.
    gap = (logits[:, 0] - logits[:, 2]).reshape(-1, per)
    want = (gap - gap.mean(axis=1, keepdims=True)).reshape(-1) + np.where(top, NLI_GAP, -NLI_GAP)
    move_c = (logits[:, 0] + move_e) - logits[:, 2] - want
    _shift_rows(sd, pooled, {0: move_e, 2: move_c})


# ----------------------------------------------------------------------------- checkpoints


def _rename(sd: dict, v: Variant) -> dict:
    """bert.* / classifier.* -> the variant's key layout."""
    out = {}
    for key, tensor in sd.items():
        if key.startswith("bert."):
            key = f"{v.prefix}.{key[len('bert.'):]}"
        elif key.startswith("classifier.") and v.task_model and v.head_keys == "head":
            key = "head." + key
        out[key] = tensor
    return out


def make_checkpoint(folder: Path, variant: Variant | str | None = None, *, seed: int = 0, layers: int = 2,
                    hidden: int = 32, margins: list | None = None, per_text: int = len(PARITY_CANDIDATES),
                    vocab: list[str] | None = None, arch: dict | None = None, std: float = 0.4) -> Path:
    """Writes a random StructBERT checkpoint in `variant`'s layout (a Variant or a CASES name; default: the
    sentiment repo's layout) into `folder`; with `margins`, builds wide margins in for those inputs (zero-shot:
    text-major pairs, `per_text` candidates per text)."""
    v = CASES[variant] if isinstance(variant, str) else (variant or SENTIMENT_MAIN)
    if v.task not in ("sentiment", "nli"):
        raise ValueError(f"task must be sentiment or nli, not {v.task!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = vocab or _tiny_vocab()
    arch = arch or _arch(len(vocab), layers, hidden, heads=max(1, hidden // 16))
    labels = NLI_LABELS if v.task == "nli" else SENTIMENT_LABELS
    configuration, config, mapping = _files(v, arch, labels)
    _write_json(folder / "configuration.json", configuration)
    if config is not None:
        _write_json(folder / "config.json", config)
    if mapping is not None:
        _write_json(folder / "label_mapping.json", mapping)
    if v.model == "text-classification":  # ModelScope then builds AutoTokenizer, which needs the class named
        _write_json(folder / "tokenizer_config.json", {"tokenizer_class": "BertTokenizer", "do_lower_case": True})
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    sd = _state_dict(arch, len(labels), seed, std)
    if margins:
        build_margins(sd, v.effective_arch(arch), vocab, v.task, margins, v.effective_max_length, per_text)
    sd = _rename(sd, v)
    if v.weights == "safetensors":
        from safetensors.torch import save_file

        save_file({k: t.contiguous() for k, t in sd.items()}, str(folder / "model.safetensors"))
    elif v.weights == "bin":
        torch.save(sd, folder / "pytorch_model.bin")
    else:
        raise ValueError(f"weights must be bin or safetensors, not {v.weights!r}")
    return folder


def make_tiny_structbert_checkpoint(folder: Path, task: str = "sentiment", seed: int = 0, layers: int = 2,
                                    hidden: int = 32, margins: list | None = None, per_text: int = 6,
                                    **fields) -> Path:
    """Tiny random StructBERT in the layout the hub's `task` repo most likely has ('sentiment' or 'nli'); any
    Variant field (labels=, weights=, model=, prefix=, ...) changes that layout."""
    if task not in REAL_REPOS:
        raise ValueError(f"task must be sentiment or nli, not {task!r}")
    return make_checkpoint(folder, replace(REAL_REPOS[task], **fields), seed=seed, layers=layers, hidden=hidden,
                           margins=margins, per_text=per_text)


def make_structbert_base_shape_checkpoint(folder: Path, task: str = "sentiment", seed: int = 0) -> Path:
    """StructBERT-base-shaped (12 x 768, 21128 vocab) random checkpoint; for timing only."""
    vocab = _base_vocab()
    return make_checkpoint(folder, REAL_REPOS[task], seed=seed, vocab=vocab,
                           arch=_arch(len(vocab), 12, 768, heads=12), std=0.02)
