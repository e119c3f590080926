"""`senti-server`: parse settings from flags and SENTI_ variables, configure logging, serve."""
import logging
import sys

from .app import serve
from .settings import Settings


def main(argv: list[str] | None = None) -> int:
    """Entry point of the senti-server console script."""
    settings = Settings(_cli_parse_args=sys.argv[1:] if argv is None else argv, _cli_prog_name="senti-server")
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
