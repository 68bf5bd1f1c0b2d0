"""``python -m deepclust``: the library's command line, without Prefect (``deepclust.cli.main`` with no runners).

The ``deepclust`` console script (``deepclust.flows.cli.main``) is the same command line with the Prefect paths added:
``reproduce`` / ``demo`` through the flow, ``separate --prefect`` / ``--dask-address``.
"""

from deepclust.cli import main

main()
