"""``python -m deepclust.flows``: the ``deepclust`` command (``deepclust.flows.cli.main``), for where the console
script is not on PATH."""

import sys

from deepclust.flows.cli import main

sys.exit(main())
