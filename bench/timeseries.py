"""Speed of sitewatch's time-series break detector on a Sentinel-2 tile, next to BEAST and CCDC.

Generates a 10980 x 10980 px, 4-band (B02 B03 B04 B08), 12-date series block by block (each
block deterministic from the seed and its position, the tile is never held whole): stable land
(bare soil to vegetation with an annual NDVI cycle), a known share of pixels inside construction
sites that change abruptly and for good on a known day (brighter, NDVI drop), Gaussian noise,
irregular dates over a year on the Sentinel-2 5-day revisit grid, cloud blobs (masked in
``valid``) and a few missed one-date clouds (haze left in the clear data). Worker processes run
:func:`sitewatch.detect.timeseries.detect_breaks` on the blocks and the bench prints throughput,
peak RSS and the detection quality against the truth.

On a sample of changed and stable pixels of the same data it then runs BEAST (``Rbeast``, Zhao
et al. 2019, *Remote Sens. Environ.* 232:111181) and CCDC (``lcmap-pyccd``, Zhu & Woodcock 2014)
when installed, and prints their speed and onset errors next to sitewatch's on that sample.

    python bench/timeseries.py [--rows 10980] [--size 10980] [--block 512] [--workers N]
                               [--sample 200] [--seed 0]

``--rows 1024`` processes a strip of the tile (the first 1024 rows, 11 Mpx) instead.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import resource
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, fields

import numpy as np
from scipy import ndimage

from sitewatch.detect.indices import normalised_difference
from sitewatch.detect.timeseries import detect_breaks

BANDS = ("B02", "B03", "B04", "B08")
N_DATES = 12
FIRST_DAY = np.datetime64("2019-01-01", "D")
REVISIT_DAYS = 5  # Sentinel-2A + 2B repeat cycle, the grid the acquisition dates lie on

#: Reflectance (B02, B03, B04, B08) of bare soil, of green vegetation at its seasonal peak and
#: low, and of a construction site (concrete, gravel, roofs).
SOIL = np.array([0.09, 0.12, 0.15, 0.22], np.float32)
GREEN_PEAK = np.array([0.03, 0.07, 0.04, 0.42], np.float32)
GREEN_LOW = np.array([0.05, 0.08, 0.09, 0.24], np.float32)
BUILT = np.array([0.17, 0.19, 0.21, 0.26], np.float32)
#: Reflectance added per unit of haze by a thin cloud the mask missed (bluer than NIR).
HAZE_TINT = np.array([1.2, 1.1, 1.0, 0.7], np.float32)

NOISE = 0.015          # reflectance standard deviation of each band and date
CHANGE_SHARE = 0.05    # share of pixels inside construction sites
CLOUD_SHARE = 0.15     # mean share of observations masked as cloud
MISSED_SHARE = 0.02    # share of pixels with one cloud the mask missed
CLOUD_CELL = 32        # pixels: scale of the cloud blobs
MAX_ERROR_DAYS = 400   # onset errors are tallied in a histogram of whole days up to this


@dataclass
class Block:
    """Generated series of one block and the truth to score a detector against.

    ``values`` (time, band, rows, cols) float32 reflectance, ``valid`` (time, rows, cols) bool;
    ``changed`` (rows, cols) bool, ``onset`` (rows, cols) datetime64[D] day of the change (NaT
    where stable), ``missed_cloud`` (rows, cols) bool: a clear date carries an unmasked cloud.
    """

    values: np.ndarray
    valid: np.ndarray
    changed: np.ndarray
    onset: np.ndarray
    missed_cloud: np.ndarray


@dataclass(frozen=True)
class Acquisitions:
    """The tile's acquisitions: ``times`` (datetime64[D]) and the share of the tile each one
    has masked as cloud (``cloud_share``)."""

    times: np.ndarray
    cloud_share: np.ndarray

    @classmethod
    def plan(cls, seed: int) -> Acquisitions:
        """``N_DATES`` dates over a year, one a month on the 5-day revisit grid, cloud shares
        of mean ``CLOUD_SHARE`` (a few cloudy dates, many nearly clear ones)."""
        rng = np.random.default_rng([seed, 1])
        slot = 365 // N_DATES
        offsets = rng.integers(0, slot // REVISIT_DAYS, N_DATES) * REVISIT_DAYS
        draws = rng.beta(0.6, 0.6 * (1 - CLOUD_SHARE) / CLOUD_SHARE, N_DATES)
        return cls(FIRST_DAY + np.arange(N_DATES) * slot + offsets,
                   np.minimum(draws * CLOUD_SHARE / draws.mean(), 0.95))

    @property
    def revisit_days(self) -> float:
        """Median gap between consecutive acquisitions (days)."""
        return float(np.median(np.diff(self.times).astype(np.int64)))


def smooth_field(rng: np.random.Generator, rows: int, cols: int, cell: int) -> np.ndarray:
    """Random field 0..1 varying over ``cell`` pixels (bilinear upsampling of coarse noise)."""
    coarse = rng.random((rows // cell + 2, cols // cell + 2))
    return ndimage.zoom(coarse, cell, order=1)[:rows, :cols].astype(np.float32)


def construction_sites(rng: np.random.Generator, rows: int, cols: int, times: np.ndarray
                       ) -> np.ndarray:
    """Onset day of rectangular sites (8-40 px a side) covering ``CHANGE_SHARE`` of the block,
    NaT elsewhere; onsets leave at least three acquisitions on either side."""
    onset = np.full((rows, cols), np.datetime64("NaT"), "datetime64[D]")
    earliest, latest = times[2] + 1, times[-3]
    while (~np.isnat(onset)).mean() < CHANGE_SHARE:
        height, width = rng.integers(8, 41, 2)
        top, left = rng.integers(0, rows - height + 1), rng.integers(0, cols - width + 1)
        day = earliest + rng.integers(0, (latest - earliest).astype(int) + 1)
        onset[top:top + height, left:left + width] = day
    return onset


def generate_block(seed: int, row0: int, col0: int, rows: int, cols: int,
                   plan: Acquisitions) -> Block:
    """The block at ``(row0, col0)`` of the tile, the same for the same arguments."""
    times = plan.times
    rng = np.random.default_rng([seed, row0, col0])
    cover = np.clip(2.5 * smooth_field(rng, rows, cols, 64) - 1.0, 0.0, 1.0)  # 1/3 bare soil
    soil = SOIL[:, None, None] * rng.uniform(0.8, 1.25, (1, rows, cols)).astype(np.float32)
    peak_day = 170 + rng.normal(0.0, 15.0, (rows, cols))
    day = (times - FIRST_DAY).astype(np.float64)
    green = 0.5 + 0.5 * np.cos(2 * np.pi * (day[:, None, None] - peak_day) / 365.25)
    vegetation = (GREEN_LOW[None, :, None, None] + (GREEN_PEAK - GREEN_LOW)[None, :, None, None]
                  * green[:, None].astype(np.float32))
    values = cover * vegetation + (1.0 - cover) * soil

    onset = construction_sites(rng, rows, cols, times)
    changed = ~np.isnat(onset)
    built = BUILT[:, None, None] * rng.uniform(0.9, 1.2, (1, rows, cols)).astype(np.float32)
    after = changed & (times[:, None, None] >= onset)
    values = np.where(after[:, None], built, values)
    values += rng.normal(0.0, NOISE, values.shape).astype(np.float32)

    valid = np.ones((len(times), rows, cols), bool)
    for t, share in enumerate(plan.cloud_share):
        density = smooth_field(rng, rows, cols, CLOUD_CELL)
        cloud = density > np.quantile(density, 1.0 - share)
        values[t][:, cloud] = 0.35 + 0.3 * density[cloud]
        valid[t] = ~cloud

    missed_date = rng.integers(0, len(times), (rows, cols))
    missed = (rng.random((rows, cols)) < MISSED_SHARE)
    missed &= np.take_along_axis(valid, missed_date[None], 0)[0]
    haze = rng.uniform(0.08, 0.25, (rows, cols)).astype(np.float32) * HAZE_TINT[:, None, None]
    hit = (np.arange(len(times))[:, None, None] == missed_date) & missed
    values += np.where(hit[:, None], haze, np.float32(0.0))
    return Block(values, valid, changed, onset, missed)


@dataclass
class Tally:
    """Detection quality counts, summable over blocks.

    A detector gives each pixel an onset day (NaT: no break). A changed pixel's onset is
    *within one revisit* when it is at most ``revisit_days`` from the true day.
    """

    pixels: int = 0
    observations: int = 0
    masked: int = 0
    changed: int = 0
    detected: int = 0
    within_revisit: int = 0
    stable: int = 0
    false_breaks: int = 0
    missed_cloud: int = 0
    missed_cloud_breaks: int = 0
    error_days: np.ndarray = field(
        default_factory=lambda: np.zeros(MAX_ERROR_DAYS + 1, np.int64))  # |onset error| counts

    @classmethod
    def of(cls, onset: np.ndarray, block: Block, revisit_days: float) -> Tally:
        """Score per-pixel onsets (any shape matching the block's truth arrays)."""
        broke = ~np.isnat(onset)
        changed = block.changed
        hit = broke & changed
        error = np.abs((onset[hit] - block.onset[hit]).astype(np.int64))
        stable = ~changed
        return cls(
            pixels=int(changed.size), observations=int(block.valid.size),
            masked=int((~block.valid).sum()), changed=int(changed.sum()), detected=int(hit.sum()),
            within_revisit=int((error <= revisit_days).sum()), stable=int(stable.sum()),
            false_breaks=int((broke & stable).sum()),
            missed_cloud=int((stable & block.missed_cloud).sum()),
            missed_cloud_breaks=int((broke & stable & block.missed_cloud).sum()),
            error_days=np.bincount(np.minimum(error, MAX_ERROR_DAYS),
                                   minlength=MAX_ERROR_DAYS + 1))

    def __add__(self, other: Tally) -> Tally:
        return Tally(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(Tally)))

    def median_error_days(self) -> float:
        """Median absolute onset error (days) of the detected changed pixels, NaN if none."""
        if not self.detected:
            return float("nan")
        return float(np.searchsorted(np.cumsum(self.error_days), self.detected / 2))


def percent(count: int, total: int) -> str:
    """``count`` as a percentage of ``total`` ("n/a" when there is none)."""
    return f"{100 * count / total:.1f} %" if total else "n/a"


def worker_pid(_: int) -> int:
    """The worker's process id (to start the workers before the clock starts)."""
    return os.getpid()


def process_block(task: tuple[int, int, int, int, int, Acquisitions]
                  ) -> tuple[Tally, float, float]:
    """Generate one block, detect its breaks and score them; also the CPU seconds of each."""
    seed, row0, col0, rows, cols, plan = task
    start = time.process_time()
    block = generate_block(seed, row0, col0, rows, cols, plan)
    generated = time.process_time()
    result = detect_breaks(block.values, block.valid, plan.times, BANDS)
    detected = time.process_time()
    tally = Tally.of(result.onset, block, plan.revisit_days)
    return tally, generated - start, detected - generated


def run_tile(args: argparse.Namespace, plan: Acquisitions) -> None:
    """Run the detector over the first ``args.rows`` rows of the tile and print the figures."""
    rows = min(args.rows, args.size)
    tasks = [(args.seed, r, c, min(args.block, rows - r), min(args.block, args.size - c), plan)
             for r in range(0, rows, args.block) for c in range(0, args.size, args.block)]
    print(f"tile {args.size} x {args.size} px, processing rows 0-{rows} "
          f"({rows * args.size / 1e6:.1f} Mpx) in {len(tasks)} blocks of up to "
          f"{args.block} x {args.block} px on {args.workers} worker processes")
    # One BLAS/OpenMP thread a worker, so "per core" means per core.
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = "1"
    total, generate_s, detect_s = Tally(), 0.0, 0.0
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.workers, mp_context=context) as pool:
        launch = time.perf_counter()
        list(pool.map(worker_pid, range(args.workers)))
        start = time.perf_counter()
        print(f"worker start-up (imports): {start - launch:.1f} s, not in the timings")
        for done, (tally, gen_s, det_s) in enumerate(pool.map(process_block, tasks), 1):
            total, generate_s, detect_s = total + tally, generate_s + gen_s, detect_s + det_s
            if done % max(1, len(tasks) // 10) == 0 and done < len(tasks):
                print(f"  {done}/{len(tasks)} blocks, {time.perf_counter() - start:.0f} s",
                      flush=True)
    wall = time.perf_counter() - start
    pixels = total.pixels

    print(f"pixels processed: {pixels:,} ({len(plan.times)} dates x {len(BANDS)} bands, "
          f"{percent(total.masked, total.observations)} of the observations masked as cloud)")
    print(f"wall time: {wall:.1f} s; {pixels / wall:,.0f} px/s on {args.workers} workers, "
          f"{pixels / wall / args.workers:,.0f} px/s per core (wall, generation included)")
    print(f"CPU time: detect_breaks {detect_s:.1f} s, data generation {generate_s:.1f} s; "
          f"{pixels / detect_s:,.0f} px/s per core (detect_breaks CPU time)")
    print(f"peak RSS: main process {peak_rss_mb(resource.RUSAGE_SELF):.0f} MB, largest worker "
          f"{peak_rss_mb(resource.RUSAGE_CHILDREN):.0f} MB")
    print(f"changed pixels: {total.changed:,} ({percent(total.changed, pixels)}), detected "
          f"{percent(total.detected, total.changed)},"
          f" onset within one revisit ({plan.revisit_days:.0f} days) "
          f"{percent(total.within_revisit, total.changed)}, median onset error "
          f"{total.median_error_days():.0f} days")
    print(f"false breaks: {percent(total.false_breaks, total.stable)} of {total.stable:,} "
          f"stable pixels, {percent(total.missed_cloud_breaks, total.missed_cloud)} of "
          f"{total.missed_cloud:,} stable pixels with an unmasked one-date cloud")


def peak_rss_mb(who: int) -> float:
    """Peak resident set size (MB) of ``resource.RUSAGE_SELF`` or of the largest waited-for
    child (``RUSAGE_CHILDREN``); Linux reports ``ru_maxrss`` in KiB."""
    return resource.getrusage(who).ru_maxrss / 1024


def sample_pixels(block: Block, n_each: int, seed: int) -> Block:
    """``n_each`` changed and ``n_each`` stable pixels of ``block``, as a (1, 2 n_each) block."""
    rng = np.random.default_rng([seed, 2])
    picks = [rng.choice(np.flatnonzero(kind), min(n_each, int(kind.sum())), replace=False)
             for kind in (block.changed.ravel(), ~block.changed.ravel())]
    index = np.concatenate(picks)

    def pick(a):
        return a.reshape(a.shape[:-2] + (-1,))[..., index][..., None, :]

    return Block(pick(block.values), pick(block.valid), pick(block.changed), pick(block.onset),
                 pick(block.missed_cloud))


def sitewatch_onsets(sample: Block, times: np.ndarray) -> tuple[np.ndarray, float]:
    """Onsets and CPU seconds per call of ``detect_breaks`` on the sample (repeated >= 1 s)."""
    calls, start = 0, time.process_time()
    while calls == 0 or time.process_time() - start < 1.0:
        result = detect_breaks(sample.values, sample.valid, times, BANDS)
        calls += 1
    return result.onset, (time.process_time() - start) / calls


def decimal_years(times: np.ndarray) -> np.ndarray:
    """Days as fractional years from 2019.0 (365.25-day years), BEAST's time axis."""
    return 2019.0 + (times - FIRST_DAY).astype(np.float64) / 365.25


def beast_onsets(sample: Block, times: np.ndarray, feature: str) -> tuple[np.ndarray, float]:
    """BEAST on each pixel's ``"ndvi"`` or ``"brightness"`` (mean visible reflectance), NaN
    where masked, put on a monthly grid by ``beast_irreg``; one annual harmonic, up to three
    trend changepoints at least two months from each other and the ends (``tseg_minlength=2``,
    as sitewatch's ``min_segment=2``; the default, half a period, leaves only the middle month
    as a candidate on 12 points). The changepoint of highest probability is the onset where
    that probability is at least 0.5. The outlier component (``hasOutlier=True``) is left off:
    on these series Rbeast 0.1.25 then prints "__OO_NewKnot_BirthMove: maxIdx=-1" and aborts
    (double free)."""
    import Rbeast as rb

    if feature == "ndvi":
        series = normalised_difference(sample.values[:, 3], sample.values[:, 2])
    else:
        series = sample.values[:, :3].mean(axis=1)
    series = np.where(sample.valid, series, np.nan)[:, 0]
    years = decimal_years(times)
    onset = np.full(series.shape[1], np.datetime64("NaT"), "datetime64[D]")
    start = time.process_time()
    for i in range(series.shape[1]):
        out = rb.beast_irreg(series[:, i], time=years, deltat=1 / 12, season="harmonic",
                             period=1.0, sorder_minmax=[1, 1], scp_minmax=[0, 0],
                             tcp_minmax=[0, 3], tseg_minlength=2, quiet=True,
                             print_param=False, print_progress=False, print_warning=False)
        if out.trend.cpPr[0] >= 0.5:
            days = (out.trend.cp[0] - 2019.0) * 365.25
            onset[i] = FIRST_DAY + np.timedelta64(int(round(days)), "D")
    return onset[None], time.process_time() - start


def ccd_onsets(sample: Block, times: np.ndarray) -> tuple[np.ndarray, float, int]:
    """pyccd on each pixel, Landsat-style inputs (reflectance x 10000, thermal in 0.1 K, ARD
    bit-packed QA: bit 1 clear, bit 5 cloud). The missing bands are synthesised: SWIR1 =
    1.2 red + 0.35 NIR, SWIR2 = 1.1 red + 0.15 NIR (soil ~0.26 / 0.20, vegetation ~0.21 / 0.11,
    concrete ~0.34 / 0.27), thermal a constant 295 K. The onset is the break day of the first
    model that ends in a change. Also returns the number of pixels given any model."""
    import ccd

    blue, green, red, nir = (sample.values[:, b, 0] for b in range(4))
    bands = [blue, green, red, nir, 1.2 * red + 0.35 * nir, 1.1 * red + 0.15 * nir]
    bands = [np.round(10000 * np.clip(b, 0, 1)).astype(np.int64) for b in bands]
    thermal = np.full(len(times), 2950)
    qa = np.where(sample.valid[:, 0], 1 << 1, 1 << 5)
    ordinal = times.astype(np.int64) + datetime.date(1970, 1, 1).toordinal()
    # LCMAP's default STAT_ORD (2018-01-01) would leave a 2019 series without statistics.
    params = {"STAT_ORD": int(ordinal[-1])}
    onset = np.full(qa.shape[1], np.datetime64("NaT"), "datetime64[D]")
    modelled = 0
    start = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for i in range(qa.shape[1]):
            models = ccd.detect(ordinal, *(b[:, i] for b in bands), thermal, qa[:, i],
                                params=params)["change_models"]
            modelled += bool(models)
            breaks = [m["break_day"] for m in models if m["change_probability"] >= 1]
            if breaks:
                day = datetime.date.fromordinal(int(breaks[0]))
                onset[i] = np.datetime64(day, "D")
    return onset[None], time.process_time() - start, modelled


def compare_on_sample(args: argparse.Namespace, plan: Acquisitions) -> None:
    """sitewatch, BEAST and CCDC on the same sample pixels: speed and quality side by side."""
    size = min(args.block, args.size)
    times, revisit_days = plan.times, plan.revisit_days
    sample = sample_pixels(generate_block(args.seed, 0, 0, size, size, plan), args.sample,
                           args.seed)
    n = sample.changed.size
    print(f"\nsample: {int(sample.changed.sum())} changed + {int((~sample.changed).sum())} "
          f"stable pixels of block (0, 0), one process")
    rows = []
    onset, seconds = sitewatch_onsets(sample, times)
    rows.append(("sitewatch detect_breaks", n / seconds, Tally.of(onset, sample, revisit_days)))
    try:
        for feature in ("ndvi", "brightness"):
            onset, seconds = beast_onsets(sample, times, feature)
            rows.append((f"rbeast ({feature})", n / seconds,
                         Tally.of(onset, sample, revisit_days)))
    except ImportError as error:
        print(f"rbeast: skipped (not installed: {error})")
    try:
        import ccd

        onset, seconds, modelled = ccd_onsets(sample, times)
        rows.append(("lcmap-pyccd (CCDC)", n / seconds, Tally.of(onset, sample, revisit_days)))
        print("lcmap-pyccd: SWIR1, SWIR2 synthesised from red and NIR, thermal constant 295 K")
        if not modelled:
            defaults = ccd.parameters.defaults
            meow = defaults["MEOW_SIZE"]
            print(f"lcmap-pyccd: no model on any pixel (its speed is that of giving up): CCDC "
                  f"fits nothing on MEOW_SIZE = {meow} or fewer clear observations and "
                  f"searches for breaks from 2 x {meow} on (PEEK_SIZE = "
                  f"{defaults['PEEK_SIZE']} to confirm one); this series has {len(times)} dates")
    except ImportError as error:
        print(f"lcmap-pyccd: not installed ({error})")

    print(f"{'method':<28}{'px/s/core':>11}{'detected':>10}{'onset<=1 revisit':>18}"
          f"{'median err d':>14}{'false breaks':>14}")
    for name, speed, tally in rows:
        print(f"{name:<28}{speed:>11,.1f}{percent(tally.detected, tally.changed):>10}"
              f"{percent(tally.within_revisit, tally.changed):>18}"
              f"{tally.median_error_days():>14.0f}"
              f"{percent(tally.false_breaks, tally.stable):>14}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10980, help="tile side (pixels)")
    parser.add_argument("--rows", type=int, default=10980, help="process the first ROWS rows")
    parser.add_argument("--block", type=int, default=512, help="block side (pixels)")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--sample", type=int, default=200,
                        help="changed and as many stable pixels for the BEAST/CCDC comparison")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    plan = Acquisitions.plan(args.seed)
    print(f"{len(plan.times)} dates {plan.times[0]} .. {plan.times[-1]} (median gap "
          f"{plan.revisit_days:.0f} days); load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs")
    run_tile(args, plan)
    compare_on_sample(args, plan)
    print(f"load average {os.getloadavg()[0]:.1f}; peak RSS of the main process "
          f"{peak_rss_mb(resource.RUSAGE_SELF):.0f} MB")


if __name__ == "__main__":
    main()
