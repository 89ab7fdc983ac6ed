"""The one interface every change-detection method implements.

A *pairwise* method compares two co-registered, normalised images of one grid and returns a
:class:`ChangeResult`: a continuous change score, a binary change map from an automatic
threshold, and optional layers saying what kind of change it is. A *time-series* method
(:mod:`sitewatch.detect.timeseries`) returns a :class:`BreakResult` per pixel. Both are plain
arrays on the stack's grid; :mod:`sitewatch.detect.run` carries the georeference and stores them.
A learned model plugs in by registering a :class:`PairwiseMethod` under a new name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

#: Value of ``ChangeResult.change`` where the input was masked (nodata, cloud, shadow).
MASKED = 255


@dataclass
class ChangeResult:
    """Output of a pairwise method on one image pair.

    Attributes
    ----------
    score
        (rows, cols) float32, larger = more likely changed; NaN where masked.
    change
        (rows, cols) uint8: 1 change, 0 no change, :data:`MASKED` where masked.
    threshold
        The score threshold used to make ``change``.
    method
        Registered name of the method.
    parameters
        Everything needed to reproduce the result (JSON-serialisable).
    kinds
        Optional boolean (rows, cols) layers naming the kind of change, such as
        ``"vegetation_loss"``, ``"new_bright_surface"``, ``"darkening"``.
    diagnostics
        What the method says about its own result (JSON-serialisable), for a method that fits a
        no-change model: the called share of the valid pixels, the expected false-alarm rate
        and ``warnings``, plain sentences saying why the result may not be trusted (see
        :func:`sitewatch.detect.nochange.diagnose`).
    """

    score: np.ndarray
    change: np.ndarray
    threshold: float
    method: str
    parameters: dict = field(default_factory=dict)
    kinds: dict[str, np.ndarray] = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)


#: A pairwise method: (before, after, valid, band_names, pixel_size_m) -> ChangeResult.
#: ``before``/``after`` are (bands, rows, cols) float32 reflectance, ``valid`` (rows, cols) bool
#: is True where both dates are usable; ``pixel_size_m`` is the grid's pixel size in metres.
PairwiseMethod = Callable[[np.ndarray, np.ndarray, np.ndarray, Sequence[str], float],
                          ChangeResult]

_REGISTRY: dict[str, PairwiseMethod] = {}


def register(name: str) -> Callable[[PairwiseMethod], PairwiseMethod]:
    """Decorator registering a pairwise method under ``name``."""

    def decorate(method: PairwiseMethod) -> PairwiseMethod:
        _REGISTRY[name] = method
        return method

    return decorate


def pairwise_methods() -> dict[str, PairwiseMethod]:
    """Registered pairwise methods by name: those of :mod:`sitewatch.detect.pairwise` (loaded
    here, on first use) and any registered since."""
    import sitewatch.detect.pairwise  # noqa: F401  (its decorators fill the registry)

    return dict(_REGISTRY)


def binary_map(score: np.ndarray, valid: np.ndarray, threshold: float) -> np.ndarray:
    """``change`` layer from a score and a threshold (``MASKED`` where not valid)."""
    change = np.where(score > threshold, 1, 0).astype(np.uint8)
    change[~valid | ~np.isfinite(score)] = MASKED
    return change
