"""`senti-server`: parse settings from flags and SENTI_ variables, configure logging, serve."""
import logging
import os
import sys

from . import logs
from .app import serve
from .settings import Settings


def main(argv: list[str] | None = None) -> int:
    """Entry point of the senti-server console script."""
    settings = Settings(_cli_parse_args=sys.argv[1:] if argv is None else argv, _cli_prog_name="senti-server")
    logs.configure(settings.log_level, settings.log_format)
    code = serve(settings)
    # Every accepted call has been answered or cancelled by now; a handler thread still parked on a cancelled
    # call (a health Watch, a stream's reader) must not keep the process alive, so exit without joining them.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
