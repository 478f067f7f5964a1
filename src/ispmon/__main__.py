"""`python -m ispmon` is the same as the `ispmon` command."""

import sys

from ispmon.cli import main

sys.exit(main())
