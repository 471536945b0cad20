"""Analyses of trajectory stores: stability, reset gate, IoU recovery, adversarial regions, movies.

Each analysis is a function that returns xarray objects, with a ``plot_*`` companion
that writes a PNG; ``nca analyze`` calls them. Importing this package loads neither
torch nor matplotlib: :mod:`analysis.adversarial` imports torch inside its
functions, and the plotting functions import matplotlib when called.
"""

from analysis.compare import compare_runs
from analysis.growth import GrowthFit, classify_growth
from analysis.iou import analyze_iou
from analysis.movie import render_movie, write_movie
from analysis.norms import analyze_norms
from analysis.reset import analyze_reset, detect_change_point
from analysis.store import MissingDataError, StoreError, open_store

__all__ = [
    "GrowthFit",
    "MissingDataError",
    "StoreError",
    "analyze_iou",
    "analyze_norms",
    "analyze_reset",
    "classify_growth",
    "compare_runs",
    "detect_change_point",
    "open_store",
    "render_movie",
    "write_movie",
]
