"""`senti`: command-line client for a senti server."""
import argparse
import json
import sys
from pathlib import Path
from typing import Iterator

import grpc

from .evaluate import evaluate, read_examples, read_items
from .sdk import SentiClient


def _print(obj) -> None:
    print(json.dumps(obj, ensure_ascii=False))


def cmd_predict(client: SentiClient, args) -> None:
    texts = args.texts or [line for line in sys.stdin.read().splitlines() if line.strip()]
    for text, p in zip(texts, client.predict(texts, strict=args.strict)):
        _print({"text": text, "label": p.label, "score": round(p.score, 4), "polarity": p.polarity,
                "truncated": p.truncated})


def cmd_zeroshot(client: SentiClient, args) -> None:
    examples = read_examples(Path(args.examples)) if args.examples else None
    if args.labels:
        labels = [label.strip() for label in args.labels.split(",")]
    elif examples:
        labels = list(examples)
    elif args.classifier:
        labels = []
    else:
        raise SystemExit("senti zeroshot: give --labels, --examples to take the labels from, or --classifier")
    for text, r in zip(args.texts, client.classify_zero_shot(args.texts, labels, template=args.template,
                                                              multi_label=args.multi_label, examples=examples,
                                                              classifier=args.classifier)):
        _print({"text": text, "labels": [[label, round(score, 4)] for label, score in r.labels]})


def _stream_items(lines) -> Iterator[tuple[str, str]]:
    """(id, text) from JSON lines {"id", "text"} or plain text lines (id = line number)."""
    for number, line in enumerate(lines, 1):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            record = json.loads(line)
            yield str(record.get("id", number)), record.get("text", "")
        else:
            yield str(number), line


def cmd_stream(client: SentiClient, args) -> None:
    for result in client.stream(_stream_items(sys.stdin), strict=args.strict):
        if result.ok:
            p = result.prediction
            _print({"id": result.id, "label": p.label, "score": round(p.score, 4), "polarity": p.polarity})
        else:
            _print({"id": result.id, "error": result.error_code.name, "message": result.error_message})


def cmd_info(client: SentiClient, args) -> None:
    from google.protobuf.json_format import MessageToDict
    _print(MessageToDict(client.info()))


def cmd_eval(client: SentiClient, args) -> None:
    examples = read_examples(Path(args.examples)) if args.examples else None
    report = evaluate(client, read_items(Path(args.file)), task=args.task, template=args.template,
                      examples=examples)
    if args.json:
        _print(report.as_dict())
    else:
        print(report.table())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="senti", description="Call a senti server.")
    parser.add_argument("--target", default="localhost:50051", help="server address (default localhost:50051)")
    parser.add_argument("--timeout", type=float, default=30.0, help="deadline per call in seconds")
    parser.add_argument("--token", default=None, help="bearer token, when the server requires one")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="sentiment of texts (arguments, or lines on stdin)")
    p.add_argument("texts", nargs="*")
    p.add_argument("--strict", action="store_true", help="reject texts over the model's max tokens")
    p.set_defaults(run=cmd_predict)
    p = sub.add_parser("zeroshot", help="classify texts into labels named here")
    p.add_argument("texts", nargs="+")
    p.add_argument("--labels", default="", help="comma-separated candidate labels (default: those of --examples)")
    p.add_argument("--template", default="", help="hypothesis template with {} (default: the model's)")
    p.add_argument("--multi-label", action="store_true")
    p.add_argument("--examples", default="", metavar="FILE.jsonl",
                   help='few-shot examples: JSON lines {"text", "label"} (embedding bundles only)')
    p.add_argument("--classifier", default="", metavar="NAME",
                   help="a classifier registered on the server (senti info lists them) instead of the labels")
    p.set_defaults(run=cmd_zeroshot)
    p = sub.add_parser("stream", help="JSON lines {id,text} (or plain lines) on stdin -> JSON lines out")
    p.add_argument("--strict", action="store_true")
    p.set_defaults(run=cmd_stream)
    p = sub.add_parser("info", help="models, tasks and limits of the server")
    p.set_defaults(run=cmd_info)
    p = sub.add_parser("eval", help="accuracy and confusion on a JSON-lines file of {text,label}")
    p.add_argument("file")
    p.add_argument("--task", choices=["auto", "sentiment", "zeroshot"], default="auto")
    p.add_argument("--template", default="", help="zero-shot hypothesis template")
    p.add_argument("--examples", default="", metavar="FILE.jsonl",
                   help='few-shot examples sent with every request: JSON lines {"text", "label"}')
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=cmd_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the senti console script."""
    args = build_parser().parse_args(argv)
    metadata = [("authorization", f"Bearer {args.token}")] if args.token else []
    with SentiClient(args.target, timeout=args.timeout, metadata=metadata) as client:
        try:
            args.run(client, args)
        except grpc.RpcError as error:
            print(f"senti: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
        except ValueError as error:  # a malformed --examples file, examples with --task sentiment
            print(f"senti: {error}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
