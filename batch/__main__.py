"""python -m senti.batch: the senti-batch command line."""
import sys

from .cli import main

sys.exit(main())
