"""``python -m vaekit`` is the ``vaekit`` command."""

import sys

from .cli import main

sys.exit(main())
