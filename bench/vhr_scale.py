"""Wall time and peak memory of the default pairwise method on a large VHR RGB pair.

    python bench/vhr_scale.py [--size 10000] [--pixel 0.5] [--threads 2]

Two dates of a ``--size`` x ``--size`` RGB pair at ``--pixel`` metres (textured ground, a grid
of bright roofs, a tenth of them replaced by dark debris on the second date) are generated in
memory; then, each in a fresh process so that neither run's memory counts towards the other,
``default`` runs with its learned RGB model (the shipped weights) and on its classic evidence
(``learned_vhr=False``). Printed per run: wall time of the method, megapixels per second, the
peak resident set of the process (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, which includes
the two input arrays of 12 bytes per pixel) and the called share.

The pair is for timing, not for scoring: uniform grey squares turning into noise are not what
real roofs and debris look like, and neither path calls them (0.00 % on 2026-12-07, both
paths; the learned model's largest probability on a 1000 px crop is 0.32). Detection quality
is measured on real pairs by ``bench/vhr.py``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time

import numpy as np


def pair(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Before and after (3, size, size) float32 reflectance: ground, roofs, some destroyed."""
    rng = np.random.default_rng(seed)
    before = np.empty((3, size, size), np.float32)
    for band, level in enumerate((0.30, 0.28, 0.24)):
        before[band] = level + 0.03 * rng.standard_normal((size, size), np.float32)
    after = before + 0.01 * rng.standard_normal((3, size, size), np.float32)
    for top in range(40, size - 40, 60):
        for left in range(40, size - 40, 60):
            before[:, top:top + 24, left:left + 24] = after[:, top:top + 24, left:left + 24] = 0.7
            if rng.random() < 0.1:
                after[:, top:top + 24, left:left + 24] = 0.12 + 0.06 * rng.random((3, 24, 24))
    return before, after


def run(size: int, pixel: float, learned: bool, threads: int, queue) -> None:
    import torch

    from sitewatch.detect.base import pairwise_methods
    from sitewatch.detect.pairwise import learned_rgb_weights

    torch.set_num_threads(threads)
    before, after = pair(size)
    valid = np.ones((size, size), bool)
    if learned and learned_rgb_weights(["red", "green", "blue"], pixel) is None:
        queue.put(None)
        return
    started = time.perf_counter()
    result = pairwise_methods()["default"](before, after, valid, ["red", "green", "blue"], pixel,
                                           learned_vhr=learned)
    seconds = time.perf_counter() - started
    queue.put((seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               float(np.mean(result.change == 1)), result.parameters["evidence"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--pixel", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    print(f"{args.size} x {args.size} px RGB pair at {args.pixel} m "
          f"({args.size ** 2 / 1e6:.0f} Mpx; inputs {2 * 12 * args.size ** 2 / 2**20:.0f} MiB)")
    for learned in (True, False):
        queue = context.Queue()
        process = context.Process(target=run, args=(args.size, args.pixel, learned,
                                                    args.threads, queue))
        process.start()
        figures = queue.get()
        process.join()
        label = "learned RGB model" if learned else "classic evidence"
        if figures is None:
            print(f"{label}: no shipped weights or no PyTorch, skipped")
            continue
        seconds, peak_mib, called, evidence = figures
        print(f"{label:<18} {seconds:7.1f} s  {args.size ** 2 / 1e6 / seconds:6.2f} Mpx/s  "
              f"peak RSS {peak_mib:8.0f} MiB  called {100 * called:5.2f} %  "
              f"({', '.join(evidence)})")


if __name__ == "__main__":
    main()
