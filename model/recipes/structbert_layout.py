"""Where a ModelScope StructBERT folder keeps its prefix, labels, max length and architecture, read the way
ModelScope 1.40.2's own pipelines read them (build time only; standard library).

Each rule below names the ModelScope function it follows, as `file: function` with paths inside the `modelscope`
package. Two loaders exist there, chosen by configuration.json `model.type` (`models/base/base_model.py:
Model.from_pretrained` -> `models/builder.py: build_model`):

* `text-classification` (a backbone/head task model): `models/nlp/task_models/text_classification.py:
  ModelForTextClassification` on `models/nlp/task_models/task_model.py: EncoderModel`, whose weights are loaded
  by `utils/checkpoint.py: load_task_model_checkpoint` from pytorch_model.bin.
* `structbert`: `models/nlp/structbert/text_classification.py: SbertForSequenceClassification`, loaded by
  `models/nlp/structbert/backbone.py: SbertPreTrainedModel._instantiate` through transformers'
  `PreTrainedModel.from_pretrained` (config.json first, configuration.json `model` fields as overrides).

Anything outside these fails here with a CheckpointError that names the file and the field, rather than being
built into a bundle whose answers differ from ModelScope's (ModelScope itself often loads such a folder with
randomly initialised weights and only logs a warning).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TASK_MODEL = "text-classification"  # metainfo.py TaskModels.text_classification
STRUCTBERT = "structbert"  # metainfo.py Models.structbert
TEXT_CLASSIFICATION_HEAD = "text-classification"  # metainfo.py Heads.text_classification
PIPELINE_SEQUENCE_LENGTH = 512  # both pipelines pass sequence_length=512 to Preprocessor.from_pretrained
HEAD_HIDDEN_SIZE_DEFAULT = 768  # models/nlp/heads/text_classification_head.py: TextClassificationHead.__init__

# models/nlp/structbert/configuration.py: SbertConfig.__init__ defaults (what a field left out becomes).
SBERT_DEFAULTS: dict[str, Any] = {
    "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
    "intermediate_size": 3072, "hidden_act": "gelu", "max_position_embeddings": 512, "type_vocab_size": 2,
    "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0, "position_embedding_type": "absolute",
}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class CheckpointError(ValueError):
    """A StructBERT checkpoint folder is incomplete, inconsistent, or laid out in a way ModelScope does not load."""


def read_json(path: Path) -> dict | None:
    """Parsed JSON object, or None when the file is absent; a clear error when it is not an object."""
    if not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, not {type(data).__name__}")
    return data


def _block(parent: dict, key: str, where: str) -> dict | None:
    """parent[key] when it is an object, None when absent or null; a CheckpointError for anything else."""
    value = parent.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise CheckpointError(f"{where}.{key} must be an object, not {type(value).__name__}")
    return value


# ----------------------------------------------------------------------------- labels


def _inverted(id2label: dict) -> dict:
    """{label: id} from {id: label}, as ModelScope inverts it."""
    return {label: idx for idx, label in id2label.items()}


def parse_label_mapping(folder: Path) -> tuple[dict | None, str | None]:
    """(label2id, where it came from), in `utils/hub.py: parse_label_mapping`'s order: label_mapping.json;
    configuration.json model.label2id, model.id2label, preprocessor.label2id, preprocessor.id2label (top level of
    the preprocessor block only); then config.json label2id, id2label. A key that is present wins even when empty
    (ModelScope tests `hasattr`), so an empty mapping ends the search there."""
    mapping = read_json(folder / "label_mapping.json")
    if mapping is not None:
        return dict(mapping), "label_mapping.json"
    cfg = read_json(folder / "configuration.json") or {}
    for section in ("model", "preprocessor"):
        block = _block(cfg, section, "configuration.json") or {}
        if "label2id" in block:
            return dict(block["label2id"] or {}), f"configuration.json {section}.label2id"
        if "id2label" in block:
            return _inverted(block["id2label"] or {}), f"configuration.json {section}.id2label"
    config = read_json(folder / "config.json") or {}
    if "label2id" in config:
        return dict(config["label2id"] or {}), "config.json label2id"
    if "id2label" in config:
        return _inverted(config["id2label"] or {}), "config.json id2label"
    return None, None


def labels_in_id_order(label2id: dict, where: str) -> list[str]:
    """[label of id 0, 1, ...]; ids must be exactly 0..n-1 so that logit columns map one-to-one."""
    try:
        by_id = {int(idx): str(label) for label, idx in label2id.items()}
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"label ids in {where} must be integers: {label2id}") from e
    if len(by_id) != len(label2id) or sorted(by_id) != list(range(len(label2id))):
        raise CheckpointError(f"label ids in {where} are not 0..{len(label2id) - 1}: {sorted(label2id.values())}")
    return [by_id[i] for i in range(len(by_id))]


def preprocessor_config(folder: Path) -> tuple[dict, str]:
    """The preprocessor block ModelScope builds the inference preprocessor from, and its path in
    configuration.json ('preprocessor' or 'preprocessor.val').

    `preprocessors/base.py: Preprocessor.from_pretrained`: the block itself when it has a `type`, else its `val`
    sub-block (inference and eval mode read `val`, only training reads `train`), else the block as it is."""
    cfg = read_json(folder / "configuration.json") or {}
    block = _block(cfg, "preprocessor", "configuration.json") or {}
    if "type" not in block and "val" in block:
        return _block(block, "val", "configuration.json preprocessor") or {}, "preprocessor.val"
    return block, "preprocessor"


def pipeline_labels(folder: Path) -> tuple[list[str] | None, str | None]:
    """Labels the text-classification pipeline answers with, in id order, and where they came from.

    `pipelines/nlp/text_classification_pipeline.py: TextClassificationPipeline.__init__` takes id2label from its
    preprocessor; `preprocessors/nlp/text_classification_preprocessor.py: TextClassificationPreprocessorBase`
    uses the `label2id` of its configuration block first and calls `parse_label_mapping` only without one."""
    folder = Path(folder)
    block, where = preprocessor_config(folder)
    if block.get("label2id") is not None:
        source = f"configuration.json {where}.label2id"
        return labels_in_id_order(block["label2id"], f"{folder} ({source})"), source
    label2id, source = parse_label_mapping(folder)
    if label2id:
        return labels_in_id_order(label2id, f"{folder} ({source})"), source
    return None, None


# ----------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Layout:
    """How ModelScope builds and loads one folder; every value comes with the file and field it was read from."""

    folder: Path
    loader: str  # "task-model" (ModelForTextClassification) or "sbert" (SbertForSequenceClassification)
    prefix: str  # attribute (and key prefix) of the StructBERT backbone
    prefix_source: str
    arch: dict[str, Any]
    arch_sources: dict[str, str]
    weights: Path
    model_labels: list[str] | None  # the model's own id2label (zero-shot bundles name their columns with it)
    model_labels_source: str | None
    num_labels: int | None  # classifier rows the model is built with, where the configuration says
    num_labels_source: str | None
    head_hidden_size: int | None = None  # task model: the head's input width
    head_source: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def described(self) -> str:
        """One line for logs: loader, prefix and their sources."""
        model = ("ModelForTextClassification (backbone/head)" if self.loader == "task-model"
                 else "SbertForSequenceClassification")
        return f"{model}, backbone '{self.prefix}' ({self.prefix_source}), weights {self.weights.name}"


def _model_block(folder: Path) -> tuple[dict | None, str | None]:
    """configuration.json `model` and its type (`model_type` standing in for a missing `type`, as in
    `models/base/base_model.py: Model.from_pretrained`); (None, None) without configuration.json."""
    cfg = read_json(folder / "configuration.json")
    if cfg is None:
        return None, None
    model = _block(cfg, "model", "configuration.json")
    if model is None:
        raise CheckpointError(f"{folder / 'configuration.json'} has no `model` block: ModelScope cannot build "
                              "a model from it (expected model.type 'structbert' or 'text-classification')")
    return model, model.get("type", model.get("model_type"))


def _arch(*layers: tuple[dict, str]) -> tuple[dict, dict]:
    """SbertConfig's defaults, overridden by each (fields, where) layer in turn; each field with its source
    (a field set to null counts as absent)."""
    arch = dict(SBERT_DEFAULTS)
    absent = " nor ".join(where for _, where in layers)
    sources = {k: f"SbertConfig's default (no {k} in {absent})" for k in arch}
    for fields, where in layers:
        for key in SBERT_DEFAULTS:
            if fields.get(key) is not None:
                arch[key], sources[key] = fields[key], f"{where} {key}"
    return arch, sources


def _weights_file(folder: Path, order: tuple[str, ...]) -> Path:
    """The first of `order` present in the folder."""
    for name in order:
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(f"no weights in {folder}: expected one of {', '.join(order)}")


def _task_model_layout(folder: Path, model: dict) -> Layout:
    """model.type text-classification: EncoderModel's backbone, head, labels and weights rules."""
    config = read_json(folder / "config.json")
    cfg_file = folder / "configuration.json"
    notes: list[str] = []
    # task_model.py: EncoderModel.parse_encoder_cfg. `type` of the model block was consumed by the registry.
    rest = {k: v for k, v in model.items() if k != "type"}
    backbone = _block(model, "backbone", "configuration.json model")
    if backbone is not None:
        encoder, where = backbone, "configuration.json model.backbone"
    elif "model_type" in rest:
        encoder, where = {**rest, "type": rest["model_type"]}, "configuration.json model"
    else:
        if config is None:
            raise CheckpointError(f"{cfg_file}: model.type 'text-classification' has no model.backbone block, so "
                                  f"ModelScope reads the backbone from config.json, which {folder} lacks")
        encoder, where = {**config, "type": config.get("model_type")}, "config.json"
    if encoder.get("type") != STRUCTBERT:
        raise CheckpointError(f"{where} type is {encoder.get('type')!r} ({folder}): senti builds StructBERT "
                              f"backbones only ('{STRUCTBERT}')")
    # task_model.py: EncoderModel.build_encoder: `prefix`, else `base_model_prefix`, else the backbone class's
    # base_model_prefix (structbert/backbone.py: SbertPreTrainedModel.base_model_prefix = 'bert').
    if "prefix" in encoder:
        prefix, prefix_source = encoder["prefix"], f"{where} prefix"
    elif "base_model_prefix" in encoder:
        prefix, prefix_source = encoder["base_model_prefix"], f"{where} base_model_prefix"
    else:
        prefix, prefix_source = "bert", \
            f"SbertModel.base_model_prefix 'bert' (no prefix nor base_model_prefix in {where})"
    # models/builder.py: build_backbone drops model_dir, so structbert/backbone.py: SbertModel._instantiate builds
    # SbertConfig(**block): the block's fields over SbertConfig's defaults; config.json is not read for it.
    arch, arch_sources = _arch((encoder, where))
    if where != "config.json" and config is not None:
        ignored = sorted(k for k in SBERT_DEFAULTS if k in config and config[k] != arch[k])
        if ignored:
            notes.append(f"config.json {', '.join(ignored)} ignored: ModelScope builds this backbone from {where}")
    # task_model.py: EncoderModel.parse_head_cfg (+ ModelForTextClassification.parse_head_cfg).
    head = _block(model, "head", "configuration.json model")
    if head is not None:
        head_where = "configuration.json model.head"
    elif "head_type" in rest:
        head, head_where = {**rest, "type": rest["head_type"]}, "configuration.json model"
    elif "model_type" not in rest and config is not None:
        head, head_where = dict(config), "config.json"
        head["type"] = None
    else:
        head, head_where = dict(rest), "configuration.json model"
    head_type = head.get("type") or TEXT_CLASSIFICATION_HEAD
    if head_type != TEXT_CLASSIFICATION_HEAD:
        raise CheckpointError(f"{head_where} type is {head_type!r} ({folder}): a StructBERT classifier needs "
                              f"the '{TEXT_CLASSIFICATION_HEAD}' head")
    if head.get("hidden_size") is not None:
        head_hidden, head_source = int(head["hidden_size"]), f"{head_where} hidden_size"
    else:
        head_hidden, head_source = HEAD_HIDDEN_SIZE_DEFAULT, \
            f"TextClassificationHead's default {HEAD_HIDDEN_SIZE_DEFAULT} (no hidden_size in {head_where})"
    # text_classification.py: ModelForTextClassification.__init__: model.num_labels, else parse_label_mapping.
    label2id, label_source = parse_label_mapping(folder)
    model_labels = labels_in_id_order(label2id, f"{folder} ({label_source})") if label2id else None
    if model.get("num_labels") is not None:
        num_labels, num_source = int(model["num_labels"]), "configuration.json model.num_labels"
    elif model_labels:
        num_labels, num_source = len(model_labels), label_source
    else:
        raise CheckpointError(
            f"{folder}: ModelForTextClassification takes its number of labels from configuration.json "
            "model.num_labels or from parse_label_mapping (label_mapping.json, configuration.json model.label2id/"
            "id2label or preprocessor.label2id/id2label, config.json label2id/id2label), and none is there")
    # utils/checkpoint.py: load_task_model_checkpoint reads pytorch_model.bin only; model.safetensors with the
    # same tensors is accepted here as well (the answers are those of the .bin).
    weights = _weights_file(folder, ("pytorch_model.bin", "model.safetensors"))
    if weights.name != "pytorch_model.bin":
        notes.append("model.safetensors read in place of pytorch_model.bin, the only file this ModelScope "
                     "loader opens")
    return Layout(folder=folder, loader="task-model", prefix=str(prefix), prefix_source=prefix_source, arch=arch,
                  arch_sources=arch_sources, weights=weights, model_labels=model_labels,
                  model_labels_source=label_source, num_labels=num_labels, num_labels_source=num_source,
                  head_hidden_size=head_hidden, head_source=head_source, notes=notes)


def _sbert_layout(folder: Path, model: dict | None) -> Layout:
    """model.type structbert (or no configuration.json): SbertForSequenceClassification's rules."""
    config = read_json(folder / "config.json")
    if config is None:
        raise CheckpointError(f"{folder} has no config.json: SbertForSequenceClassification (configuration.json "
                              "model.type 'structbert') reads its architecture from it")
    notes: list[str] = []
    overrides = {k: v for k, v in (model or {}).items() if k != "type"}
    if model is None:
        notes.append("no configuration.json (ModelScope's pipeline needs one): read as model.type 'structbert'")
    # backbone.py: SbertPreTrainedModel._instantiate passes the model block to from_pretrained, and transformers'
    # PretrainedConfig.from_dict sets each one that the config already has: the block's fields override config.json.
    arch, arch_sources = _arch((config, "config.json"), (overrides, "configuration.json model"))
    # text_classification.py: SbertForSequenceClassification.__init__: getattr(config, 'base_model_prefix', 'bert').
    # config.json's key becomes a config attribute; the model block overrides it only if config.json has one.
    if "base_model_prefix" in config:
        if overrides.get("base_model_prefix") is not None:
            prefix, prefix_source = overrides["base_model_prefix"], "configuration.json model.base_model_prefix"
        else:
            prefix, prefix_source = config["base_model_prefix"], "config.json base_model_prefix"
    else:
        prefix, prefix_source = "bert", \
            "SbertForSequenceClassification.base_model_prefix (no config.json base_model_prefix)"
        if "base_model_prefix" in overrides or "prefix" in overrides:
            notes.append("configuration.json model.base_model_prefix/prefix ignored: this loader reads "
                         "config.json base_model_prefix only")
    # utils/nlp/utils.py: parse_labels_in_order: model.label2id, model.id2label, then parse_label_mapping; without
    # any, transformers' config: config.json num_labels (LABEL_0..n-1), else its default of 2.
    if overrides.get("label2id") is not None:
        label2id, label_source = dict(overrides["label2id"]), "configuration.json model.label2id"
    elif overrides.get("id2label") is not None:
        label2id, label_source = _inverted(overrides["id2label"]), "configuration.json model.id2label"
    else:
        label2id, label_source = parse_label_mapping(folder)
    if label2id:
        model_labels = labels_in_id_order(label2id, f"{folder} ({label_source})")
        num_labels, num_source = len(model_labels), label_source
        declared = overrides.get("num_labels")
        if declared is not None and int(declared) != num_labels:  # transformers' from_dict raises on this
            raise CheckpointError(f"{folder}: configuration.json model.num_labels {declared} disagrees with the "
                                  f"{num_labels} labels of {label_source}")
    else:
        raw = overrides.get("num_labels", config.get("num_labels"))
        num_source = ("configuration.json model.num_labels" if overrides.get("num_labels") is not None
                      else "config.json num_labels" if config.get("num_labels") is not None
                      else "transformers' default num_labels (no labels nor num_labels anywhere)")
        num_labels = int(raw) if raw is not None else 2
        model_labels = [f"LABEL_{i}" for i in range(num_labels)]
        label_source = f"LABEL_0..{num_labels - 1} from {num_source}"
    # transformers' from_pretrained prefers model.safetensors to pytorch_model.bin.
    weights = _weights_file(folder, WEIGHT_FILES)
    return Layout(folder=folder, loader="sbert", prefix=str(prefix), prefix_source=prefix_source, arch=arch,
                  arch_sources=arch_sources, weights=weights, model_labels=model_labels,
                  model_labels_source=label_source, num_labels=num_labels, num_labels_source=num_source,
                  notes=notes)


def read_layout(folder: Path) -> Layout:
    """How ModelScope's pipeline would build the model in `folder`; CheckpointError outside its layouts."""
    folder = Path(folder)
    model, model_type = _model_block(folder)
    if model is None:
        layout = _sbert_layout(folder, None)
    elif model_type == TASK_MODEL:
        layout = _task_model_layout(folder, model)
    elif model_type == STRUCTBERT:
        layout = _sbert_layout(folder, model)
    else:
        raise CheckpointError(
            f"{folder / 'configuration.json'} model.type is {model_type!r}: senti builds the StructBERT layouts "
            f"ModelScope loads, model.type '{STRUCTBERT}' (SbertForSequenceClassification) or '{TASK_MODEL}' "
            f"with a '{STRUCTBERT}' backbone (ModelForTextClassification)")
    if not isinstance(layout.prefix, str) or not layout.prefix or "." in layout.prefix:
        raise CheckpointError(f"{layout.prefix_source} must name an attribute, not {layout.prefix!r}")
    _check_arch(layout)
    layout.notes.append(f"tokenizer: {check_tokenizer(folder)}")
    return layout


def _check_arch(layout: Layout) -> None:
    """Fields whose wrong value would not show in a weight shape."""
    a, s = layout.arch, layout.arch_sources
    if int(a["hidden_size"]) % int(a["num_attention_heads"]):
        raise CheckpointError(f"hidden_size {a['hidden_size']} ({s['hidden_size']}) is not a multiple of "
                              f"num_attention_heads {a['num_attention_heads']} ({s['num_attention_heads']})")
    if a["position_embedding_type"] != "absolute":
        raise CheckpointError(f"position_embedding_type {a['position_embedding_type']!r} "
                              f"({s['position_embedding_type']}): only 'absolute' is supported")


# ----------------------------------------------------------------------------- tokenizer

BERT_TOKENIZERS = ("BertTokenizer", "BertTokenizerFast")


def model_type(folder: Path) -> str | None:
    """`utils/hub.py: get_model_type`: configuration.json model.backbone.type, model.model_type (without a
    model.type), model.type; without configuration.json, config.json model_type."""
    folder = Path(folder)
    cfg = read_json(folder / "configuration.json")
    if cfg is not None:
        model = _block(cfg, "model", "configuration.json") or {}
        if "backbone" in model:
            return (model["backbone"] or {}).get("type")
        if "model_type" in model and "type" not in model:
            return model["model_type"]
        return model.get("type")
    return (read_json(folder / "config.json") or {}).get("model_type")


def check_tokenizer(folder: Path) -> str:
    """Which tokenizer ModelScope's preprocessor builds; CheckpointError unless it is BERT's WordPiece.

    `preprocessors/nlp/transformers_tokenizer.py: NLPTokenizer.build_tokenizer`: BertTokenizer (BertTokenizerFast
    with tokenizer_config.json use_fast) for model type structbert, else transformers' AutoTokenizer, which only
    knows a folder whose tokenizer_config.json names tokenizer_class (config.json's model_type 'structbert' is
    not a transformers model type)."""
    folder = Path(folder)
    kind = model_type(folder)
    if kind == STRUCTBERT:
        return "BertTokenizer (model type structbert)"
    tok_cfg = read_json(folder / "tokenizer_config.json") or {}
    cls = tok_cfg.get("tokenizer_class")
    if cls in BERT_TOKENIZERS:
        return f"{cls} (tokenizer_config.json tokenizer_class; model type {kind!r})"
    raise CheckpointError(
        f"{folder}: ModelScope's preprocessor reads model type {kind!r} (configuration.json model.backbone.type "
        f"or model.type), so it builds transformers' AutoTokenizer, and tokenizer_config.json names "
        f"{'no tokenizer_class' if cls is None else f'tokenizer_class {cls!r}'}: add a model.backbone block "
        f"with type '{STRUCTBERT}', or tokenizer_config.json tokenizer_class 'BertTokenizer'")


# ----------------------------------------------------------------------------- max length


def max_length(folder: Path) -> tuple[int, str]:
    """Truncation length of ModelScope's pipelines, and where it came from.

    Both pipelines pass sequence_length=512 into Preprocessor.from_pretrained, which writes it over the block's
    own `sequence_length` (`sub_cfg.update(kwargs)` in preprocessors/base.py); the preprocessor then prefers the
    block's `max_length` (`TextClassificationTransformersPreprocessor.__init__`,
    `ZeroShotClassificationTransformersPreprocessor.__init__`: `max_length if max_length is not None else
    sequence_length`)."""
    block, where = preprocessor_config(Path(folder))
    value = block.get("max_length")
    if value is None:
        note = (f", which replaces configuration.json {where}.sequence_length"
                if block.get("sequence_length") is not None else "")
        return PIPELINE_SEQUENCE_LENGTH, f"the pipeline's sequence_length {PIPELINE_SEQUENCE_LENGTH}{note}"
    if isinstance(value, bool) or not isinstance(value, int) or value < 3:
        raise CheckpointError(f"{Path(folder) / 'configuration.json'} {where}.max_length must be an integer "
                              f">= 3, not {value!r}")
    return value, f"configuration.json {where}.max_length"


# ----------------------------------------------------------------------------- weights


def _fix_key(key: str) -> str:
    """TF-era LayerNorm names: both loaders rename gamma/beta (utils/checkpoint.py: _load_state_dict_into_model,
    transformers' _fix_state_dict_key_on_load)."""
    if key.endswith("LayerNorm.gamma"):
        return key[: -len("gamma")] + "weight"
    if key.endswith("LayerNorm.beta"):
        return key[: -len("beta")] + "bias"
    return key


def remap_state_dict(layout: Layout, sd: dict) -> dict:
    """The checkpoint's tensors under transformers BertForSequenceClassification names (`bert.*`, `classifier.*`),
    picked the way the layout's ModelScope loader picks them; keys it would not load are dropped."""
    sd = {_fix_key(k): v for k, v in sd.items()}
    p = layout.prefix
    # Both loaders test the prefix with a plain str.startswith (not "prefix."), as reproduced here.
    has_prefix = any(k.startswith(p) for k in sd)
    out = {}
    if layout.loader == "sbert":
        # transformers' _load_pretrained_model: with prefixed keys they load as they are; without, every key gets
        # the prefix, so `classifier.*` would never load (it raises "corrupted" when the classifier is there).
        if not has_prefix:
            raise CheckpointError(
                f"{layout.weights}: no key starts with '{p}' ({layout.prefix_source}), so ModelScope's "
                f"SbertForSequenceClassification cannot load it (transformers rejects the state dict as corrupted, "
                f"or leaves every weight random). Keys look like: {', '.join(sorted(sd)[:4])}")
        for k, v in sd.items():
            if k.startswith(p + "."):
                out["bert." + k[len(p) + 1:]] = v
            elif k.startswith("classifier."):
                out[k] = v
        return out
    # utils/checkpoint.py: load_task_model_checkpoint._load_checkpoint.
    head_prefixed = any(k.startswith("head") for k in sd)
    for k, v in sd.items():
        if has_prefix:
            if k.startswith(p + "."):
                out["bert." + k[len(p) + 1:]] = v
        elif not k.startswith("head") and not k.startswith("classifier."):
            out["bert." + k] = v  # a bare backbone state dict loads into the backbone
        if head_prefixed:
            if k.startswith("head.classifier."):
                out[k[len("head."):]] = v
        elif k.startswith("classifier."):
            out[k] = v  # _add_head_prefix_to_state_dict
    if not has_prefix and head_prefixed:
        raise CheckpointError(f"{layout.weights}: bare backbone keys beside head.* keys; ModelScope rejects this "
                              "state dict as corrupted")
    return out


def check_shapes(layout: Layout, sd: dict, expected: dict) -> None:
    """Missing or mis-shaped weights fail naming the configuration field that decided the expected shape
    (ModelScope would load such a checkpoint with those weights randomly initialised)."""
    missing = sorted(k for k in expected if k not in sd)
    if missing:
        shown = ", ".join(missing[:6]) + (f" ... (+{len(missing) - 6} more)" if len(missing) > 6 else "")
        head = "head.classifier.* or classifier.*" if layout.loader == "task-model" else "classifier.*"
        raise CheckpointError(
            f"{layout.weights} lacks {len(missing)} StructBERT weight(s) that ModelScope's "
            f"{layout.described.split(',')[0]} loads: {shown} (backbone keys '{layout.prefix}.*' from "
            f"{layout.prefix_source}, head keys {head}). Found keys like: {', '.join(sorted(sd)[:4]) or 'none'}")
    a, s = layout.arch, layout.arch_sources
    hidden = f"hidden_size {a['hidden_size']} ({s['hidden_size']})"
    if layout.head_hidden_size is not None and layout.head_hidden_size != a["hidden_size"]:
        raise CheckpointError(f"the head's hidden_size {layout.head_hidden_size} ({layout.head_source}) differs "
                              f"from the backbone's {hidden}")
    rows = tuple(sd["classifier.weight"].shape)[0]
    if layout.num_labels is not None and rows != layout.num_labels:
        raise CheckpointError(f"{layout.weights}: the classifier has {rows} rows, but ModelScope builds "
                              f"{layout.num_labels} from {layout.num_labels_source}")
    hints = {
        "bert.embeddings.word_embeddings.weight": ("vocab_size", "hidden_size"),
        "bert.embeddings.position_embeddings.weight": ("max_position_embeddings", "hidden_size"),
        "bert.embeddings.token_type_embeddings.weight": ("type_vocab_size", "hidden_size"),
    }
    for key, param in expected.items():
        got, want = tuple(sd[key].shape), tuple(param.shape)
        if got == want:
            continue
        fields = hints.get(key) or (("hidden_size", "intermediate_size") if "intermediate" in key
                                    or (".output.dense." in key and "attention" not in key) else ("hidden_size",))
        cause = " and ".join(f"{f} {a[f]} ({s[f]})" for f in fields)
        raise CheckpointError(f"{layout.weights}: {key} has shape {got}, but ModelScope builds {want} from {cause}")
    layers = {int(k.split(".")[3]) for k in sd if k.startswith("bert.encoder.layer.")}
    if layers and max(layers) + 1 > a["num_hidden_layers"]:
        raise CheckpointError(f"{layout.weights} has {max(layers) + 1} layers, but ModelScope builds "
                              f"{a['num_hidden_layers']} from {s['num_hidden_layers']}")
