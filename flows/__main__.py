"""``python -m flows``: the end-to-end ``reproduce`` flow (same options as ``python -m flows.reproduce``)."""

import sys

from flows.reproduce import main

sys.exit(main())
