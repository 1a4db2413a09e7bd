"""``python -m xprnn``: the same as the ``xprnn`` command."""

import sys

from .cli import main

sys.exit(main())
