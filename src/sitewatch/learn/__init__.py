"""Learned change detection: a small Siamese change network, its training and its inference.

- :mod:`sitewatch.learn.data`: readers of the OSCD and LEVIR-CD layouts, balanced patch sampling
  with augmentation (numpy only).
- :mod:`sitewatch.learn.model`: the FC-Siam-diff network (PyTorch).
- :mod:`sitewatch.learn.train`: :func:`~sitewatch.learn.train.train` writes weights, a model card
  and a training log.
- :mod:`sitewatch.learn.infer`: tiled inference, registered as the pairwise method ``"learned"``.

PyTorch is the optional extra ``sitewatch[ml]``; without it everything else in sitewatch works and
:func:`register_learned_method` returns False.
"""

from __future__ import annotations

import importlib


def register_learned_method() -> bool:
    """Register the pairwise method ``"learned"`` if PyTorch is installed; True when registered."""
    try:
        importlib.import_module("sitewatch.learn.infer")
    except ModuleNotFoundError as error:
        if error.name != "torch":
            raise
        return False
    return True
