"""Bench: one run's settings, texts, tokenizer and results, which every scenario reads and fills."""
from __future__ import annotations

import argparse
import json

from . import common
from .machine import machine
from .settings import SEED


class Bench:
    """Holds the run's settings, texts and results; each scenario's `run(bench)` fills `bench.results`."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.quick = args.quick
        self.bundle = args.bundle.resolve()
        self.out = args.out
        self.out.mkdir(parents=True, exist_ok=True)
        self.seconds = args.seconds or (4.0 if self.quick else 10.0)
        self.warmup = 0.5 if self.quick else 1.0
        unique = common.load_corpus(dedupe=True)
        self.raw_lines = common.load_corpus(dedupe=False)
        self.texts = common.shuffled(unique, SEED)
        from .engines import bundle_tokenizer
        from senti.model.bundle import load_bundle
        self.tokenizer = bundle_tokenizer(load_bundle(self.bundle))
        self.results: dict = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
                              "corpus": {"raw_lines": len(self.raw_lines), "unique": len(unique)}}

    def lengths(self, texts: list[str]) -> dict:
        """Token lengths (with the model prefix and special tokens) of what a scenario sends."""
        return common.length_stats([e.length for e in self.tokenizer.encode_batch(list(texts))])

    def save(self) -> None:
        (self.out / "results.json").write_text(json.dumps(self.results, indent=1, ensure_ascii=False),
                                               encoding="utf-8")
