"""ModelScope's own pipelines on the tiny checkpoints, run once per session in ModelScope's venv.

`modelscope_venv` makes (or reuses: it is cached, keyed by the lock) the venv of scripts/modelscope_venv.py;
SENTI_MODELSCOPE_PYTHON names another interpreter to use instead. `parity` writes every tests.structbert_checkpoints
CASES checkpoint (margins built in for the parity inputs), builds senti's bundle of each (fp32 and INT8), and runs
tests/modelscope/ms_pipeline.py on all of them in one subprocess, offline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.structbert_checkpoints import (CASES, MARGIN_NLI_TEXTS, PARITY_CANDIDATES, PARITY_NLI_TEXTS,
                                          PARITY_TEMPLATE,
                                          PARITY_TEXTS, Variant, make_checkpoint, margin_inputs)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "modelscope_venv.py"
RUNNER = Path(__file__).resolve().parent / "ms_pipeline.py"
SEEDS = {"sentiment": 2, "nli": 1}
STD = 0.3  # weight scale of the parity checkpoints: INT8 moves their logits by well under the built-in margins
MS_TIMEOUT_S = 600


@dataclass
class Parity:
    """Every case, and the versions ModelScope's side ran with."""

    cases: dict
    versions: dict


@dataclass
class Case:
    """One layout: its checkpoint, senti's bundle of it, and ModelScope's answers."""

    name: str
    variant: Variant
    folder: Path
    bundle: Path
    modelscope: dict


def zero_shot_queries() -> list[dict]:
    """The zero-shot calls made on both sides: the margin text single- and multi-label, the long text
    single-label (its multi-label scores sit mid-range, where fp32 rounding alone nears 1e-5), one candidate."""
    queries = [{"text": t, "candidate_labels": PARITY_CANDIDATES, "hypothesis_template": PARITY_TEMPLATE,
                "multi_label": multi} for t in PARITY_NLI_TEXTS for multi in (False, True)
               if multi is False or t in MARGIN_NLI_TEXTS]
    # One candidate: ModelScope switches to the per-label [contradiction, entailment] softmax.
    queries.append({"text": PARITY_NLI_TEXTS[0], "candidate_labels": PARITY_CANDIDATES[-1:],
                    "hypothesis_template": PARITY_TEMPLATE, "multi_label": False})
    return queries


@pytest.fixture(scope="session")
def modelscope_venv() -> Path:
    """Python of the ModelScope venv (made on first use: about a minute or two, then cached)."""
    named = os.environ.get("SENTI_MODELSCOPE_PYTHON")
    if named:
        return Path(named)
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        pytest.fail(f"scripts/modelscope_venv.py could not make ModelScope's venv:\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def _ms_env(cache: Path) -> dict:
    """Offline: an empty ModelScope cache, a hub endpoint nothing listens on, no Hugging Face hub."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(MODELSCOPE_CACHE=str(cache), MODELSCOPE_ENDPOINT="http://127.0.0.1:9", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", HF_HOME=str(cache / "hf"), PYTHONNOUSERSITE="1",
               MS_PIPELINE_THREADS="2", OMP_NUM_THREADS="2")
    return env


@pytest.fixture(scope="session")
def parity(modelscope_venv, tmp_path_factory) -> Parity:
    """Every CASES layout built by senti and answered by ModelScope's pipeline."""
    from senti.model.recipes.structbert import build_structbert_bundle

    root = tmp_path_factory.mktemp("modelscope-parity")
    cases: dict[str, Case] = {}
    spec = []
    for name, variant in CASES.items():
        folder = make_checkpoint(root / "checkpoints" / name, variant, seed=SEEDS[variant.task], std=STD,
                                 margins=margin_inputs(variant.task))
        bundle = build_structbert_bundle(str(folder), root / "bundles" / name, progress=False)
        cases[name] = Case(name, variant, folder, bundle, {})
        spec.append({"name": name, "folder": str(folder), "task": variant.task, "texts": PARITY_TEXTS,
                     "zero_shot": zero_shot_queries()})
    (root / "spec.json").write_text(json.dumps({"cases": spec}, ensure_ascii=False), encoding="utf-8")
    cache = root / "ms-cache"
    cache.mkdir()
    done = subprocess.run([str(modelscope_venv), str(RUNNER), str(root / "spec.json"), str(root / "ms.json")],
                          capture_output=True, text=True, env=_ms_env(cache), cwd=root, timeout=MS_TIMEOUT_S)
    if done.returncode != 0:
        pytest.fail(f"ModelScope's pipeline runner failed (exit {done.returncode}):\n{done.stderr[-6000:]}")
    answers = json.loads((root / "ms.json").read_text(encoding="utf-8"))
    assert answers["network"] == [], f"ModelScope tried the network: {answers['network']}"
    for name, case in cases.items():
        case.modelscope = answers["cases"][name]
    return Parity(cases, answers["versions"])
