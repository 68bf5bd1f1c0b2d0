"""deepclust: single-channel speech separation by deep clustering (Hershey et al., ICASSP 2016).

The library never imports Prefect: every stage runs by hand from a notebook or a script.
"""

__version__ = "0.1.0"
