"""ispmon: service availability and network monitoring for internet service providers."""

import structlog

__version__ = "0.1.0"

# Used as a library (README's Python example), nothing has called `ispmon.logging.configure_logging`:
# structlog's own default would print every info line to stdout, mixed with the program's output.
# Routing through the stdlib instead leaves the host program in charge (no handler: warnings and
# errors on stderr only). The daemon and the CLI configure logging properly at start.
if not structlog.is_configured():
    structlog.configure(logger_factory=structlog.stdlib.LoggerFactory())
