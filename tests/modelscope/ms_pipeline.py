"""Runs ModelScope's own pipelines on local checkpoint folders and writes their answers as JSON.

Runs inside the ModelScope virtual environment (scripts/modelscope_venv.py), never in senti's: tests/modelscope
starts it as a subprocess and compares what it writes with senti's bundles. Usage:

    python ms_pipeline.py SPEC.json OUT.json

SPEC: {"cases": [{"name", "folder", "task": "sentiment" | "nli", "texts": [...],
                  "zero_shot": [{"text", "candidate_labels", "hypothesis_template", "multi_label"}, ...]}]}
OUT:  {"versions": {...}, "network": [attempts], "cases": {name: {"sentiment": [{"labels", "scores"}, ...],
       "zero_shot": [{"labels", "scores"}, ...]} or {"error": "..."}}}

Nothing may reach the network: every non-loopback connection or name lookup is refused and recorded, so the test
sees any hub call ModelScope attempts. Only local folders given by absolute path are loaded (ModelScope asks the
hub about `owner/name` ids, never about absolute paths).
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import sys
import traceback

NETWORK: list[str] = []
_real_getaddrinfo = socket.getaddrinfo
_real_connect = socket.socket.connect


def _loopback(host) -> bool:
    if host in (None, "", "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _guarded_getaddrinfo(host, *args, **kwargs):
    if not _loopback(host):
        NETWORK.append(f"getaddrinfo {host}")
        raise OSError(f"ms_pipeline: network refused (lookup of {host})")
    return _real_getaddrinfo(host, *args, **kwargs)


def _guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
        NETWORK.append(f"connect {address}")
        raise OSError(f"ms_pipeline: network refused (connect to {address})")
    return _real_connect(self, address)


socket.getaddrinfo = _guarded_getaddrinfo
socket.socket.connect = _guarded_connect


def _plain(value):
    """JSON-able copy of a pipeline result (numpy scalars and arrays to Python)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return value


def run_case(case: dict) -> dict:
    """One checkpoint through `pipeline(Tasks.text_classification | Tasks.zero_shot_classification, model=folder)`."""
    from modelscope.models.nlp.structbert.text_classification import SbertForSequenceClassification
    from modelscope.pipelines import pipeline
    from modelscope.utils.constant import Tasks

    folder = case["folder"]
    if not os.path.isabs(folder):
        raise ValueError(f"folders must be absolute paths, not {folder!r}")
    # SbertForSequenceClassification.__init__ writes the config's base_model_prefix onto the class, and the next
    # load in this process starts from it: reset it to the class's own 'bert', as in a fresh process.
    SbertForSequenceClassification.base_model_prefix = "bert"
    out: dict = {}
    if case["task"] == "sentiment":
        pipe = pipeline(Tasks.text_classification, model=folder, device="cpu")
        out["sentiment"] = [_plain(pipe(text)) for text in case["texts"]]
    else:
        pipe = pipeline(Tasks.zero_shot_classification, model=folder, device="cpu")
        out["zero_shot"] = [
            _plain(pipe(q["text"], candidate_labels=q["candidate_labels"],
                        hypothesis_template=q["hypothesis_template"], multi_label=q["multi_label"]))
            for q in case["zero_shot"]]
    out["model_class"] = type(pipe.model).__name__
    out["max_length"] = pipe.preprocessor.nlp_tokenizer.tokenize_kwargs.get("max_length")
    return out


def main(argv: list[str]) -> int:
    spec_path, out_path = argv[1], argv[2]
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    import modelscope
    import torch
    import transformers

    torch.set_num_threads(int(os.environ.get("MS_PIPELINE_THREADS", "2")))
    result = {"versions": {"modelscope": modelscope.__version__, "torch": torch.__version__,
                           "transformers": transformers.__version__},
              "cases": {}, "network": NETWORK}
    for case in spec["cases"]:
        try:
            result["cases"][case["name"]] = run_case(case)
        except Exception as error:  # one broken case must not hide the others' answers
            result["cases"][case["name"]] = {"error": f"{type(error).__name__}: {error}",
                                             "traceback": traceback.format_exc()}
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
