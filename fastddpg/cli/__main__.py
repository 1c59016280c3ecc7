"""``python -m fastddpg.cli``: the ``fastddpg`` command."""

import sys

from .main import main

sys.exit(main())
