"""Change detection: where and when the ground changed.

- :mod:`base`: the interface (``ChangeResult``, the method registry).
- :mod:`pairwise`: methods on two dates (CVA, IR-MAD, PCA-k-means, index differences, and the
  default combined method), with :mod:`indices` and :mod:`thresholds`.
- :mod:`timeseries`: per-pixel structural breaks over all dates (onset date and interval).
- :mod:`run`: running a method on a workspace stack and storing the layers;
  :mod:`compare`: the same for two images without a workspace.
"""

from sitewatch.detect import pairwise  # noqa: F401  (registers the pairwise methods)
from sitewatch.detect.base import ChangeResult, pairwise_methods, register
from sitewatch.detect.compare import compare
from sitewatch.detect.run import TIMESERIES, DetectResult, detect
from sitewatch.detect.timeseries import BreakResult, detect_breaks

__all__ = ["TIMESERIES", "BreakResult", "ChangeResult", "DetectResult", "compare", "detect",
           "detect_breaks", "pairwise_methods", "register"]
