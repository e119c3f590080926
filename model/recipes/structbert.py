"""ModelScope StructBERT checkpoints (sentiment / zero-shot NLI) -> senti ONNX bundle (build time only)."""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from senti.model.recipes import structbert_layout as layout_mod
from senti.model.recipes.per_token import QUANTIZATION
from senti.model.recipes.provenance import sha256_file
from senti.model.recipes.structbert_layout import CheckpointError, Layout, read_layout

FORMAT_VERSION = 1
DEFAULT_MAX_LENGTH = layout_mod.PIPELINE_SEQUENCE_LENGTH  # both pipelines' sequence_length
ONNX_INPUTS = ["input_ids", "attention_mask", "token_type_ids"]
ONNX_OUTPUT = "logits"
# Fixed in ModelScope's ZeroShotClassificationPipeline.__init__, not read from the checkpoint.
NLI_ENTAILMENT_ID = 0
NLI_CONTRADICTION_ID = 2
HUB_PROBE_TIMEOUT_S = 3.0
DEFAULT_ENDPOINT = "https://modelscope.cn"  # modelscope_hub.constants.DEFAULT_ENDPOINT
WEIGHT_FILES = layout_mod.WEIGHT_FILES
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

# configuration.json `task` / `pipeline.type` values -> our task kind.
_TASK_KINDS = {
    "sentiment-classification": "sentiment",
    "text-classification": "sentiment",
    "sentiment": "sentiment",
    "classifier": "sentiment",
    "zero-shot-classification": "nli",
    "zeroshot": "nli",
    "zero-shot": "nli",
    "nli": "nli",
}


class HubUnreachableError(RuntimeError):
    """The ModelScope hub cannot be reached and the model is not in the local cache."""


def _log(progress: bool, msg: str) -> None:
    """Progress line on stderr (stdout stays clean for JSON-printing callers)."""
    if progress:
        print(f"[structbert] {msg}", file=sys.stderr, flush=True)


_read_json = layout_mod.read_json


# ----------------------------------------------------------------------------- labels


def resolve_labels(folder: Path, kind: str = "sentiment") -> list[str]:
    """Labels in id order, from where ModelScope's pipeline takes them (structbert_layout cites the code).

    sentiment: the text-classification pipeline answers with its preprocessor's id2label: configuration.json
    preprocessor(.val).label2id, then parse_label_mapping (label_mapping.json; configuration.json model.label2id,
    model.id2label, preprocessor.label2id, preprocessor.id2label; config.json label2id, id2label).
    nli: the zero-shot pipeline never names the model's columns; the bundle names them as the model's config
    does (configuration.json model.label2id/id2label, parse_label_mapping, then config.json num_labels as
    LABEL_0..n-1).
    """
    folder = Path(folder)
    if kind == "nli":
        layout = read_layout(folder)
        return list(layout.model_labels or [])
    labels, _ = layout_mod.pipeline_labels(folder)
    if not labels:
        raise CheckpointError(
            f"no labels in {folder}: ModelScope's text-classification pipeline would answer bare class ids. "
            "Expected configuration.json preprocessor.val.label2id (or preprocessor.label2id), label_mapping.json, "
            "configuration.json model.label2id/id2label, or config.json label2id/id2label")
    return labels


# ----------------------------------------------------------------------------- model


def _bert_config(layout: Layout, labels: list[str]):
    """transformers BertConfig built by hand from the layout's architecture: AutoConfig rejects 'structbert'."""
    from transformers import BertConfig

    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "hidden_act", "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "pad_token_id",
            "position_embedding_type", "initializer_range")
    config = BertConfig(
        **{k: layout.arch[k] for k in keys},
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,  # inference only
    )
    config._attn_implementation = "eager"  # plain MatMul/Softmax graph: exports and quantizes cleanly
    return config


def _load_state_dict(path: Path) -> dict:
    """Raw tensors from a safetensors or torch pickle file (weights_only: never runs pickled code)."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    sd = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path} does not hold a state dict (found {type(sd).__name__})")
    return sd


def _apply_weights(model, sd: dict) -> None:
    """Loads exactly the model's parameters (shapes were checked against the layout)."""
    model.load_state_dict({k: sd[k] for k, _ in model.named_parameters()}, strict=False)


def _load(folder: Path, kind: str | None = None, progress: bool = False):
    """(model in eval mode, labels, layout) for `kind` ('sentiment' or 'nli'; read from the folder when None)."""
    from transformers import BertForSequenceClassification

    folder = Path(folder)
    if kind is None:
        try:
            kind = detect_task(folder)
        except ValueError:
            kind = "sentiment"
    layout = read_layout(folder)
    _log(progress, f"layout: {layout.described}")
    for note in layout.notes:
        _log(progress, f"note: {note}")
    labels = resolve_labels(folder, kind)
    if kind == "sentiment":
        source = layout_mod.pipeline_labels(folder)[1]
        if layout.num_labels is not None and len(labels) != layout.num_labels:
            raise CheckpointError(
                f"{folder}: the pipeline's {len(labels)} labels ({source}) do not match the {layout.num_labels} "
                f"classes ModelScope builds the model with ({layout.num_labels_source})")
    model = BertForSequenceClassification(_bert_config(layout, labels))
    sd = layout_mod.remap_state_dict(layout, _load_state_dict(layout.weights))
    expected = dict(model.named_parameters())
    layout_mod.check_shapes(layout, sd, expected)
    if tuple(sd["classifier.weight"].shape)[0] != len(labels):
        raise CheckpointError(f"{layout.weights}: the classifier has {tuple(sd['classifier.weight'].shape)[0]} "
                              f"rows for {len(labels)} labels {labels}")
    _apply_weights(model, sd)
    return model.eval(), labels, layout


def load_structbert(folder: Path, kind: str | None = None):
    """(transformers BertForSequenceClassification in eval mode, labels in id order) from a ModelScope folder."""
    model, labels, _ = _load(folder, kind)
    return model, labels


# ----------------------------------------------------------------------------- tokenizer


def _load_vocab(vocab_txt: Path) -> dict[str, int]:
    """vocab.txt -> {token: line index}, exactly as BertTokenizer reads it (rstrip newline only)."""
    vocab: dict[str, int] = {}
    with open(vocab_txt, encoding="utf-8") as f:
        for i, line in enumerate(f):
            vocab[line.rstrip("\n")] = i
    return vocab


def do_lower_case(folder: Path) -> bool:
    """tokenizer_config.json do_lower_case; BertTokenizer's default (True) when absent."""
    cfg = _read_json(Path(folder) / "tokenizer_config.json") or {}
    return bool(cfg.get("do_lower_case", True))


def build_tokenizer_json(vocab_txt: Path, out: Path, max_length: int = DEFAULT_MAX_LENGTH,
                         lowercase: bool = True) -> Path:
    """Writes a fast WordPiece tokenizer.json equivalent to transformers' (slow) BertTokenizer."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = _load_vocab(Path(vocab_txt))
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise CheckpointError(f"{vocab_txt} lacks special tokens {missing}")
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", continuing_subword_prefix="##",
                                     max_input_chars_per_word=100))
    # strip_accents=None follows lowercase, as in BertTokenizer.
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens(list(SPECIAL_TOKENS))  # never split "[SEP]" typed in text, like BertTokenizer
    # ModelScope truncates to max_length (longest_first); we pad per batch, not to 512.
    tok.enable_truncation(max_length=max_length, strategy="longest_first")
    tok.enable_padding(pad_id=vocab["[PAD]"], pad_token="[PAD]", pad_type_id=0)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(out))
    return out


# ----------------------------------------------------------------------------- fetching


def _endpoint() -> str:
    """Hub endpoint with modelscope_hub's precedence (MODELSCOPE_ENDPOINT > MODELSCOPE_DOMAIN > default)."""
    ep = os.environ.get("MODELSCOPE_ENDPOINT", "").strip()
    if ep:
        return ep
    domain = os.environ.get("MODELSCOPE_DOMAIN", "").strip()
    if domain:
        return domain if "://" in domain else f"https://{domain}"
    return DEFAULT_ENDPOINT


def _probe(url: str, result: list) -> None:
    """Appends True if any HTTP answer comes back (even 4xx/5xx), else False."""
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=HUB_PROBE_TIMEOUT_S)
        result.append(True)
    except urllib.error.HTTPError:
        result.append(True)  # the server answered: the hub is reachable
    except Exception:
        result.append(False)


def hub_reachable(endpoint: str | None = None, timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """One HEAD request bounded by `timeout` in total (a thread, since DNS ignores socket timeouts)."""
    result: list = []
    t = threading.Thread(target=_probe, args=(endpoint or _endpoint(), result), daemon=True)
    t.start()
    t.join(timeout + 0.5)
    return bool(result and result[0])


def build_command(source: str) -> str:
    """The `senti-model` command line that builds `source` (a folder or model id) into bundles/NAME."""
    return f"senti-model structbert {source} --out bundles/{bundle_name(source)}"


def _offline_hint(model_id: str, endpoint: str) -> str:
    """What to tell the user when the hub cannot be reached."""
    name = model_id.rsplit("/", 1)[-1]
    return (
        f"cannot reach the ModelScope hub at {endpoint} and '{model_id}' is not in the local "
        f"ModelScope cache. Download it elsewhere (e.g. `modelscope download {model_id} "
        f"--local-dir ./{name}`), copy the folder here and run: {build_command(f'/path/to/{name}')}")


def fetch_checkpoint(model_id_or_folder: str, cache_dir: Path | None = None) -> Path:
    """Local folder as is; a model id from the ModelScope cache, else the hub (failing fast when offline)."""
    local = Path(model_id_or_folder).expanduser()
    if local.is_dir():
        return local.resolve()
    if model_id_or_folder.count("/") != 1 or model_id_or_folder.startswith((".", "/", "~")):
        raise FileNotFoundError(f"{model_id_or_folder} is neither a folder nor a ModelScope id (owner/name)")
    try:
        from modelscope import snapshot_download  # lazy: only model ids need the hub client
    except ImportError as e:
        raise RuntimeError(f"'{model_id_or_folder}' looks like a ModelScope id but the hub client is missing: "
                           "pip install modelscope==1.40.2 (not modelscope[nlp]), or pass a local folder: "
                           "senti-model structbert /path/to/folder --out bundles/NAME") from e

    # Resolved per call: modelscope-hub memoizes its cache root on first use, so a later
    # MODELSCOPE_CACHE change (another build, a test) would otherwise be ignored.
    cache = cache_dir if cache_dir is not None else os.environ.get("MODELSCOPE_CACHE") or None
    cache = str(Path(cache).expanduser()) if cache else None
    try:
        return Path(snapshot_download(model_id_or_folder, cache_dir=cache, local_files_only=True))
    except Exception:
        pass  # not cached: fall through to the hub
    endpoint = _endpoint()
    # ModelScope retries an unreachable hub for ~20 s; a 3 s probe turns that into a clear, fast error.
    if not hub_reachable(endpoint):
        raise HubUnreachableError(_offline_hint(model_id_or_folder, endpoint))
    return Path(snapshot_download(model_id_or_folder, cache_dir=cache))


# ----------------------------------------------------------------------------- task + naming


def detect_task(folder: Path, task: str | None = None) -> str:
    """'sentiment' or 'nli': the explicit argument wins, else configuration.json task / pipeline.type."""
    if task:
        kind = _TASK_KINDS.get(task.strip().lower())
        if kind is None:
            raise ValueError(f"unknown task {task!r}; use one of {sorted(_TASK_KINDS)}")
        return kind
    cfg = _read_json(Path(folder) / "configuration.json") or {}
    candidates = [cfg.get("task"), (cfg.get("pipeline") or {}).get("type")]
    # pipeline.type is more specific (e.g. task text-classification, pipeline zero-shot-classification).
    for value in reversed([c for c in candidates if isinstance(c, str)]):
        kind = _TASK_KINDS.get(value.strip().lower())
        if kind:
            return kind
    raise ValueError(f"cannot tell sentiment from NLI for {folder} (configuration.json task={cfg.get('task')!r}); "
                     "pass task='sentiment' or task='nli'")


def bundle_name(source: str) -> str:
    """'damo/nlp_structbert_sentiment-classification_chinese-base' -> 'structbert-sentiment-chinese-base'."""
    base = source.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1].lower()
    if base.startswith("nlp_"):
        base = base[len("nlp_"):]
    base = base.replace("_", "-").replace("-classification", "")
    return base or "structbert"


# ----------------------------------------------------------------------------- bundle


def _logits_module(model):
    """nn.Module whose forward(input_ids, attention_mask, token_type_ids) returns the logits tensor."""
    import torch

    class _Logits(torch.nn.Module):
        """Drops the ModelOutput wrapper so the graph has exactly one output."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).logits

    return _Logits(model).eval()


def _example_inputs(tokenizer_json: Path) -> dict:
    """A padded pair batch from the real tokenizer: exercises masks and token types in the trace."""
    import torch
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    enc = tok.encode_batch([("这家店的服务很好", "这是正面评价"), ("质量一般 ok", "{}")])
    return {
        "input_ids": torch.tensor([e.ids for e in enc], dtype=torch.int64),
        "attention_mask": torch.tensor([e.attention_mask for e in enc], dtype=torch.int64),
        "token_type_ids": torch.tensor([e.type_ids for e in enc], dtype=torch.int64),
    }


def _versions() -> dict:
    """Library versions that shaped the exported graph."""
    import onnx
    import onnxruntime
    import torch
    import transformers

    return {"torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "transformers": transformers.__version__}


def _bundle_json(name: str, kind: str, labels: list[str], source: str, folder: Path,
                 quantize: bool, max_length: int, layout: dict | None = None) -> dict:
    """bundle.json contents (the schema the serving engine reads)."""
    nli = kind == "nli"
    files = {"model": "model.onnx" if quantize else "model.fp32.onnx",
             "model_fp32": "model.fp32.onnx", "tokenizer": "tokenizer.json"}
    doc: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "kind": "nli" if nli else "classifier",
        "tasks": ["zeroshot"] if nli else ["sentiment"],
        "labels": labels,
        "max_length": max_length,
        "text_prefix": "",
        "files": files,
        "quantization": QUANTIZATION if quantize else "none",
        "onnx": {"inputs": list(ONNX_INPUTS), "output": ONNX_OUTPUT, "dim": len(labels)},
    }
    if nli:
        doc["nli"] = {"entailment_id": NLI_ENTAILMENT_ID, "contradiction_id": NLI_CONTRADICTION_ID,
                      "template": "{}"}
    doc["provenance"] = {
        "source": source if not Path(source).expanduser().is_dir() else str(folder),
        "source_files": {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()},
        "built_with": _versions(),
        "built_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if layout:
        doc["provenance"]["modelscope_layout"] = layout
    return doc


def _check_nli_labels(labels: list[str]) -> None:
    """The pipeline's fixed ids 0 and 2 only make sense for a 3-way NLI head."""
    if len(labels) < 3:
        raise CheckpointError(f"NLI checkpoint has {len(labels)} labels {labels}; zero-shot needs "
                              f"entailment id {NLI_ENTAILMENT_ID} and contradiction id {NLI_CONTRADICTION_ID}")


def _max_length(folder: Path, layout: Layout) -> tuple[int, str]:
    """ModelScope's truncation length (configuration.json preprocessor max_length, else 512), capped at the
    model's positions (ModelScope itself fails on inputs longer than those)."""
    length, source = layout_mod.max_length(folder)
    positions = int(layout.arch["max_position_embeddings"])
    if positions < length:
        return positions, f"{layout.arch_sources['max_position_embeddings']} (below {length} from {source})"
    return length, source


def _install(tmp: Path, out_dir: Path) -> None:
    """Atomically swaps a finished bundle into place (old bundle removed only after the swap)."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build_structbert_bundle(source: str, out_dir: Path, task: str | None = None,
                            quantize: bool = True, progress: bool = True) -> Path:
    """Fetches a StructBERT checkpoint and writes a complete senti bundle into out_dir."""
    from .onnx_export import export_onnx, quantize_int8

    out_dir = Path(out_dir).expanduser().resolve()
    folder = fetch_checkpoint(str(source))
    _log(progress, f"checkpoint: {folder}")
    kind = detect_task(folder, task)
    model, labels, layout = _load(folder, kind, progress)
    if kind == "nli":
        _check_nli_labels(labels)
    labels_source = (layout_mod.pipeline_labels(folder)[1] if kind == "sentiment" else layout.model_labels_source)
    max_length, length_source = _max_length(folder, layout)
    _log(progress, f"task={kind} labels={labels} ({labels_source}) max_length={max_length} ({length_source})")
    described = {"loader": layout.loader, "prefix": layout.prefix, "prefix_source": layout.prefix_source,
                 "labels_source": labels_source, "max_length_source": length_source,
                 "weights": layout.weights.name, "notes": list(layout.notes)}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        tok_path = build_tokenizer_json(folder / "vocab.txt", tmp / "tokenizer.json", max_length,
                                        lowercase=do_lower_case(folder))
        _log(progress, "exporting fp32 ONNX")
        export_onnx(_logits_module(model), _example_inputs(tok_path), [ONNX_OUTPUT], tmp / "model.fp32.onnx")
        if quantize:
            _log(progress, "quantizing INT8 (per-channel)")
            quantize_int8(tmp / "model.fp32.onnx", tmp / "model.onnx")
        doc = _bundle_json(bundle_name(str(source)), kind, labels, str(source), folder, quantize, max_length,
                           described)
        (tmp / "bundle.json").write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        _install(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _log(progress, f"bundle written: {out_dir}")
    return out_dir
