"""``python -m benchmarks.net``: see :mod:`benchmarks.net.cli`."""

import sys

from .cli import main

sys.exit(main())
