"""Change detection: where and when the ground changed.

- :mod:`base`: the interface (``ChangeResult``, the method registry).
- :mod:`pairwise`: methods on two dates (CVA, IR-MAD, PCA-k-means, index differences, and the
  default combined method), with :mod:`indices` and :mod:`thresholds`.
- :mod:`timeseries`: per-pixel structural breaks over all dates (onset date and interval).
- :mod:`run`: running a method on a workspace stack and storing the layers (the same for two
  images without a workspace is the pipeline driver :mod:`sitewatch.pair`, above the stages).
"""

import lazy_loader

# Names are loaded on first use (as scikit-image does), so importing one module of the
# package does not import every stage it re-exports.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "base": ["ChangeResult", "pairwise_methods", "register"],
        "run": ["TIMESERIES", "DetectResult", "detect"],
        "timeseries": ["BreakResult", "detect_breaks"],
    },
)
