"""``python -m flows``: the ``deepclust`` command (``flows.cli.main``), for where the console script is not on PATH."""

import sys

from flows.cli import main

sys.exit(main())
