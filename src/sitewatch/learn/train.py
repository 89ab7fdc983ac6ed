"""Train the change network on labelled pairs; write weights, a model card and a training log.

Recipe (:class:`Recipe`, every setting an option): balanced random patches with flips,
rotations, radiometric jitter and a one-pixel misregistration
(:class:`sitewatch.learn.data.PatchSampler`); each date standardised per band by its own mean
and standard deviation, so that season, atmosphere or sensor gain between the dates is not
learnt as change (or, as an option, by the training pixels' statistics); binary cross-entropy
plus soft Dice loss on labelled pixels (Dice: Milletari, Navab & Ahmadi 2016, 3DV, counters the
rarity of change); AdamW with decoupled weight decay (Loshchilov & Hutter 2019, ICLR) and a
cosine learning-rate decay (Loshchilov & Hutter 2017, ICLR). Validation on held-out pairs (OSCD
cities or LEVIR tiles) after every epoch by full-image tiled inference; precision, recall, F1
and IoU pool the pixel counts of the held-out pairs, as OSCD papers do. The decision threshold
is the probability maximising validation F1 (0.5 without validation).

Everything random is seeded from ``seed``; on the CPU a rerun with the same arguments and
PyTorch version gives the same weights.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sitewatch.errors import SitewatchError
from sitewatch.learn.data import ChangePair, PatchSampler, read_pairs
from sitewatch.learn.infer import (
    NORMALISATIONS,
    checkpoint,
    default_device,
    image_statistics,
    predict_probability,
)
from sitewatch.learn.model import SiameseUNet

#: Columns of ``train-log.csv``, one row per epoch.
LOG_COLUMNS = ("epoch", "steps", "train_loss", "val_precision", "val_recall", "val_f1", "val_iou",
               "learning_rate", "seconds", "patches_per_s")


@dataclass
class TrainResult:
    """What :func:`train` wrote and measured.

    Attributes
    ----------
    weights, card, log
        Paths of ``model.pt``, ``model-card.md`` and ``train-log.csv``.
    step_losses
        Training loss of every optimisation step, in order.
    validation
        Final validation ``precision``, ``recall``, ``f1``, ``iou`` at ``threshold`` (empty
        without validation pairs).
    threshold
        Decision threshold stored with the weights (probability).
    patches_per_s, seconds
        Training throughput (patches per second, excluding validation) and total wall time (s).
    train_pairs, val_pairs
        Names of the pairs trained and validated on.
    log_rows
        Rows of ``train-log.csv``.
    settings
        The recipe as run (:class:`Recipe` fields, resolved ``steps_per_epoch``, band names,
        device).
    """

    weights: Path
    card: Path
    log: Path
    step_losses: list[float]
    validation: dict[str, float]
    threshold: float
    patches_per_s: float
    seconds: float
    train_pairs: list[str]
    val_pairs: list[str]
    log_rows: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)


def _write_atomic(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as f:
        f.write(data)
    os.chmod(f.name, 0o644)  # readable like any other output, not the temp file's 0600
    os.replace(f.name, path)


def band_statistics(pairs: Sequence[ChangePair]) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and standard deviation (reflectance) over the usable pixels of both dates."""
    samples = np.concatenate([np.concatenate([p.before[:, p.usable], p.after[:, p.usable]], axis=1)
                              for p in pairs], axis=1)
    return samples.mean(axis=1), np.maximum(samples.std(axis=1), 1e-6)


def pixel_counts(probability: np.ndarray, truth: np.ndarray, threshold: float) -> np.ndarray:
    """tp, fp, fn, tn of ``probability > threshold`` over pixels with ``truth >= 0``."""
    scored, found, changed = truth >= 0, probability > threshold, truth == 1
    return np.array([np.sum(found & changed & scored), np.sum(found & ~changed & scored),
                     np.sum(~found & changed & scored), np.sum(~found & ~changed & scored)])


def scores(counts: np.ndarray) -> dict[str, float]:
    """Precision, recall, F1 and IoU from pooled tp, fp, fn, tn counts."""
    tp, fp, fn, _ = (float(c) for c in counts)
    return {"precision": tp / max(1.0, tp + fp), "recall": tp / max(1.0, tp + fn),
            "f1": 2 * tp / max(1.0, 2 * tp + fp + fn), "iou": tp / max(1.0, tp + fp + fn)}


def date_standardised(pair: ChangePair) -> ChangePair:
    """``pair`` with each date standardised by its own per-band mean and standard deviation over
    the pair's usable pixels (the ``"date"`` normalisation of :mod:`sitewatch.learn.infer`)."""
    usable = pair.usable
    images = []
    for image in (pair.before, pair.after):
        mean, std = image_statistics(image, usable)
        images.append((image - mean[:, None, None]) / std[:, None, None])
    return ChangePair(pair.name, *images, pair.truth, pair.bands, pair.pixel_size_m, pair.source)


def _validation_probabilities(network, pairs, mean, std, recipe) -> list[tuple[np.ndarray,
                                                                                np.ndarray]]:
    network.eval()
    out = []
    for pair in pairs:
        usable = pair.usable
        if recipe.normalise == "date":
            pair = date_standardised(pair)
        probability = predict_probability(network, pair.before, pair.after, usable,
                                          mean=mean, std=std, tta=recipe.tta)
        out.append((probability, np.where(usable, pair.truth, -1)))
    network.train()
    return out


def _pixel_losses(network, pairs, mean, std) -> list[np.ndarray]:
    """Binary cross-entropy of every pixel of ``pairs`` (already standardised as the recipe
    asks) under ``network``: the hardness that hard example mining samples by (0 where
    unlabelled)."""
    network.eval()
    losses = []
    for pair in pairs:
        usable = pair.usable
        probability = predict_probability(network, pair.before, pair.after, usable, mean=mean,
                                          std=std).astype(np.float64)
        probability = np.clip(probability, 1e-6, 1 - 1e-6)
        loss = np.where(pair.truth == 1, -np.log(probability), -np.log1p(-probability))
        losses.append(np.where(usable, loss, 0.0))
    network.train()
    return losses


def _best_threshold(predictions) -> float:
    candidates = np.round(np.arange(0.05, 0.96, 0.05), 2)
    f1s = [scores(sum(pixel_counts(p, t, c) for p, t in predictions))["f1"] for c in candidates]
    return float(candidates[int(np.argmax(f1s))])


def _split(pairs: list[ChangePair], val_names: Sequence[str], dataset_dir: Path):
    names = {p.name for p in pairs}
    unknown = sorted(set(val_names) - names)
    if unknown:
        raise SitewatchError(f"validation pairs not in the dataset: {', '.join(unknown)} "
                             f"(it has {', '.join(sorted(names))})", dataset_dir)
    train_pairs = [p for p in pairs if p.name not in val_names]
    if not train_pairs:
        raise SitewatchError("every pair is held out for validation; none is left to train on",
                             dataset_dir)
    return train_pairs, [p for p in pairs if p.name in val_names]


#: Training losses: ``"bce"`` binary cross-entropy; ``"bce+dice"`` its sum with the soft Dice loss.
LOSSES = ("bce", "bce+dice")


@dataclass(frozen=True)
class Recipe:
    """Settings of a training run (all have working defaults).

    Attributes
    ----------
    epochs, steps_per_epoch
        Number of epochs and optimisation steps per epoch (``None``: as many steps as it takes
        for the patches to cover the training pixels once).
    patch, batch
        Patch side (pixels, a multiple of the network's stride) and patches per step.
    lr, weight_decay
        Initial AdamW learning rate (decayed to 0 by a cosine schedule) and decoupled weight
        decay (Loshchilov & Hutter 2019).
    loss
        One of :data:`LOSSES`.
    widths
        Channels of the network at each scale (see :class:`sitewatch.learn.model.SiameseUNet`).
    change_fraction, hard_fraction
        Share of the patches centred on a change pixel, and from the second epoch on, share
        centred on a pixel drawn in proportion to its loss under the network of the epoch before
        (hard example mining, see :class:`sitewatch.learn.data.PatchSampler`).
    gain_jitter, offset_jitter, max_shift
        Augmentation of the after date: per-band gain ``1 +- gain_jitter``, offset
        ``+- offset_jitter`` (reflectance), misregistration up to ``max_shift`` pixels.
    tta
        Average the predictions over the 8 flips and 90-degree rotations at inference
        (stored with the weights; see :func:`sitewatch.learn.infer.predict_probability`).
    normalise
        Input standardisation, one of :data:`sitewatch.learn.infer.NORMALISATIONS` (stored
        with the weights). With ``"date"`` the jitter offsets are in standard deviations.
    balance
        How patches are shared among the training pairs, one of
        :data:`sitewatch.learn.data.BALANCES` (see :class:`sitewatch.learn.data.PatchSampler`).
    seed
        Seed of every random choice (patch sampling, augmentation, weight initialisation).
    """

    epochs: int = 30
    steps_per_epoch: int | None = None
    patch: int = 64
    batch: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    loss: str = "bce+dice"
    widths: tuple[int, ...] = (16, 32, 64)
    change_fraction: float = 0.5
    hard_fraction: float = 0.0
    gain_jitter: float = 0.05
    offset_jitter: float = 0.01
    max_shift: int = 1
    tta: bool = False
    normalise: str = "date"
    balance: str = "pixels"
    seed: int = 0


def dice_loss(logits: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Soft Dice loss (Milletari et al. 2016) ``1 - (2 sum(p t) + 1) / (sum(p) + sum(t) + 1)``
    of change probabilities ``p = sigmoid(logits)`` against 0/1 ``truth`` (1-D tensors)."""
    probability = torch.sigmoid(logits)
    return 1 - (2 * (probability * truth).sum() + 1) / (probability.sum() + truth.sum() + 1)


def _loss(logits: torch.Tensor, truth: torch.Tensor, kind: str) -> torch.Tensor:
    loss = F.binary_cross_entropy_with_logits(logits, truth)
    return loss + dice_loss(logits, truth) if kind == "bce+dice" else loss


def train(dataset_dir: str | Path, layout: str, out_dir: str | Path, *,
          bands: Sequence[str] | None = None, val_cities: Sequence[str] = (),
          device: str | None = None,
          on_progress: Callable[[str, float], None] | None = None, **recipe) -> TrainResult:
    """Train an FC-Siam-diff change network on a dataset folder and write ``model.pt``,
    ``model-card.md`` and ``train-log.csv`` into ``out_dir``.

    Parameters
    ----------
    dataset_dir
        Folder in ``layout`` (``"oscd"`` or ``"levir"``, see :mod:`sitewatch.learn.data`).
    out_dir
        Output folder (created); existing outputs are replaced atomically.
    bands
        Band names to train on (default: all bands of the layout).
    val_cities
        Names of the pairs held out for validation (OSCD cities, LEVIR tile names).
    device
        Torch device (default: ``"cuda"`` when available, else ``"cpu"``).
    on_progress
        Called as ``(message, fraction done)`` after every optimisation step.
    **recipe
        Fields of :class:`Recipe` (epochs, patch, lr, loss, widths, seed, ...).
    """
    dataset_dir = Path(dataset_dir)
    pairs = read_pairs(dataset_dir, layout, bands)
    train_pairs, val_pairs = _split(pairs, list(val_cities), dataset_dir)
    return fit(train_pairs, out_dir, Recipe(**recipe), val_pairs=val_pairs, device=device,
               source=f"{dataset_dir} --layout {layout}", on_progress=on_progress)


def fit(train_pairs: Sequence[ChangePair], out_dir: str | Path, recipe: Recipe | None = None, *,
        val_pairs: Sequence[ChangePair] = (), device: str | None = None,
        source: str | None = None,
        on_progress: Callable[[str, float], None] | None = None) -> TrainResult:
    """Train an FC-Siam-diff change network on labelled pairs already in memory and write
    ``model.pt``, ``model-card.md`` and ``train-log.csv`` into ``out_dir``.

    Parameters
    ----------
    train_pairs, val_pairs
        Pairs to train on and to validate on after every epoch, all with the same bands.
        Normalisation statistics come from ``train_pairs`` only.
    out_dir
        Output folder (created); existing outputs are replaced atomically.
    recipe
        Training settings (default: :class:`Recipe()`).
    device
        Torch device (default: ``"cuda"`` when available, else ``"cpu"``).
    source
        Where the pairs came from, as ``sitewatch train`` arguments (``"<folder> --layout
        oscd"``), for the reproduce command of the model card; ``None`` when they did not come
        from a dataset folder.
    on_progress
        Called as ``(message, fraction done)`` after every optimisation step.
    """
    started = time.perf_counter()
    recipe = recipe or Recipe()
    if recipe.loss not in LOSSES:
        raise SitewatchError(f"unknown loss {recipe.loss!r}; use one of {', '.join(LOSSES)}")
    if recipe.normalise not in NORMALISATIONS:
        raise SitewatchError(f"unknown normalisation {recipe.normalise!r}; use one of "
                             f"{', '.join(NORMALISATIONS)}")
    out_dir = Path(out_dir)
    device = device or default_device()
    train_pairs, val_pairs = list(train_pairs), list(val_pairs)
    band_names = train_pairs[0].bands
    mean, std = band_statistics(train_pairs)
    if recipe.normalise == "date":
        train_pairs = [date_standardised(p) for p in train_pairs]
        mean, std = np.zeros_like(mean), np.ones_like(std)
    torch.manual_seed(recipe.seed)
    network = SiameseUNet(len(band_names), recipe.widths)
    if recipe.patch % network.stride:
        raise SitewatchError(f"patch side {recipe.patch} is not a multiple of {network.stride} "
                             "pixels")
    network.to(device).train()
    sampler = PatchSampler(train_pairs, recipe.patch, recipe.seed,
                           change_fraction=recipe.change_fraction,
                           hard_fraction=recipe.hard_fraction, gain_jitter=recipe.gain_jitter,
                           offset_jitter=recipe.offset_jitter, max_shift=recipe.max_shift,
                           balance=recipe.balance)
    steps_per_epoch = recipe.steps_per_epoch
    if steps_per_epoch is None:
        pixels = sum(int(p.usable.sum()) for p in train_pairs)
        steps_per_epoch = max(1, pixels // (recipe.patch * recipe.patch * recipe.batch))
    optimiser = torch.optim.AdamW(network.parameters(), lr=recipe.lr,
                                  weight_decay=recipe.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser,
                                                          recipe.epochs * steps_per_epoch)
    mean_t = torch.from_numpy(mean.astype(np.float32))[None, :, None, None].to(device)
    std_t = torch.from_numpy(std.astype(np.float32))[None, :, None, None].to(device)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "train-log.csv"
    step_losses, log_rows, train_seconds = [], [], 0.0
    validation, threshold = {}, 0.5
    progress = on_progress or (lambda message, fraction: None)
    for epoch in range(1, recipe.epochs + 1):
        epoch_started, epoch_losses = time.perf_counter(), []
        for step in range(1, steps_per_epoch + 1):
            before, after, truth = (torch.from_numpy(x).to(device)
                                    for x in sampler.sample(recipe.batch))
            before = torch.nan_to_num((before - mean_t) / std_t)
            after = torch.nan_to_num((after - mean_t) / std_t)
            logits = network(before, after)[:, 0]
            labelled = truth >= 0
            loss = _loss(logits[labelled], truth[labelled].float(), recipe.loss)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            epoch_losses.append(loss.item())
            progress(f"Epoch {epoch}/{recipe.epochs}, step {step}/{steps_per_epoch}, loss "
                     f"{epoch_losses[-1]:.3f}",
                     ((epoch - 1) * steps_per_epoch + step) / (recipe.epochs * steps_per_epoch))
        seconds = time.perf_counter() - epoch_started
        train_seconds += seconds
        if recipe.hard_fraction > 0 and epoch < recipe.epochs:
            sampler.set_hardness(_pixel_losses(network, train_pairs, mean, std))
        step_losses += epoch_losses
        if val_pairs:
            predictions = _validation_probabilities(network, val_pairs, mean, std, recipe)
            threshold = _best_threshold(predictions)
            validation = scores(sum(pixel_counts(p, t, threshold) for p, t in predictions))
        log_rows.append({"epoch": epoch, "steps": len(step_losses),
                         "train_loss": round(float(np.mean(epoch_losses)), 6),
                         **{f"val_{k}": round(v, 4) for k, v in validation.items()},
                         "learning_rate": schedule.get_last_lr()[0],
                         "seconds": round(seconds, 2),
                         "patches_per_s": round(steps_per_epoch * recipe.batch / seconds, 1)})
        text = io.StringIO()
        writer = csv.DictWriter(text, LOG_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(log_rows)
        _write_atomic(log_path, text.getvalue().encode())
    network.eval()
    weights_path = out_dir / "model.pt"
    buffer = io.BytesIO()
    torch.save(checkpoint(network, band_names, mean, std, threshold,
                          train_pairs[0].pixel_size_m, tta=recipe.tta,
                          normalise=recipe.normalise), buffer)
    _write_atomic(weights_path, buffer.getvalue())
    result = TrainResult(weights=weights_path, card=out_dir / "model-card.md", log=log_path,
                         step_losses=step_losses, validation=validation, threshold=threshold,
                         patches_per_s=len(step_losses) * recipe.batch / max(train_seconds, 1e-9),
                         seconds=time.perf_counter() - started,
                         train_pairs=[p.name for p in train_pairs],
                         val_pairs=[p.name for p in val_pairs], log_rows=log_rows,
                         settings={"bands": band_names, **asdict(recipe),
                                   "steps_per_epoch": steps_per_epoch,
                                   "widths": list(network.widths), "device": device})
    reproduce = (reproduce_command(result, source) if source else
                 "(trained on pairs in memory: see the program that called sitewatch.learn.fit)")
    _write_atomic(result.card, model_card(result, network, reproduce).encode())
    return result


def reproduce_command(result: TrainResult, source: str) -> str:
    """The ``sitewatch train`` command that reproduces ``result`` from the dataset ``source``
    (``"<folder> --layout <layout>"``)."""
    settings = result.settings
    options = [f"--bands {','.join(settings['bands'])}"] + [
        f"--{name.replace('_', '-')} {settings[name]}"
        for name in ("epochs", "steps_per_epoch", "patch", "batch", "lr", "weight_decay",
                     "loss", "normalise", "change_fraction", "hard_fraction", "gain_jitter",
                     "offset_jitter", "max_shift", "seed")]
    options.append(f"--widths {','.join(str(w) for w in settings['widths'])}")
    options.append("--tta" if settings["tta"] else "--no-tta")
    options += [f"--val-city {name}" for name in result.val_pairs]
    lines, line = [], f"sitewatch train {source} --out <dir>"
    for option in options:
        if len(line) + len(option) > 90:
            lines.append(line + " \\")
            line = "    "
        line += (" " if line.strip() else "") + option
    return "\n".join(lines + [line])


def model_card(result: TrainResult, network: SiameseUNet, reproduce: str,
               evaluation: str = "") -> str:
    """The model card (Mitchell et al. 2019, FAT*): data, recipe, metrics, limits, as Markdown.

    ``reproduce`` is the command that retrains the weights; ``evaluation`` is an optional
    Markdown section of further metrics (e.g. cross-validation figures).
    """
    parameters = sum(p.numel() for p in network.parameters())
    settings = result.settings
    val = result.validation
    metrics = ("| precision | recall | F1 | IoU |\n|---|---|---|---|\n"
               f"| {val['precision']:.3f} | {val['recall']:.3f} | {val['f1']:.3f} | "
               f"{val['iou']:.3f} |\n\nThe threshold was chosen on these same held-out pairs, "
               "so the figures are slightly optimistic."
               if val else "No pairs were held out: no validation metrics.")
    command = "\n".join("    " + line for line in reproduce.splitlines())
    sampling = f"{settings['change_fraction']:.0%} of the patches centred on a change pixel"
    if settings["hard_fraction"]:
        sampling += (f", {settings['hard_fraction']:.0%} on pixels drawn by their loss in the "
                     "epoch before")
    return f"""# sitewatch change model (FC-Siam-diff)

Weights: `{result.weights.name}` ({parameters} parameters). Use with
`SITEWATCH_MODEL={result.weights.name} sitewatch detect --method learned`.

## Architecture
Fully convolutional Siamese U-Net with feature differences as skip connections (FC-Siam-diff,
Caye Daudt, Le Saux & Boulch 2018, ICIP), widths {settings['widths']}.
Input: bands {', '.join(settings['bands'])} of both dates (reflectance 0..1, standardised {
"per date with its own per-band statistics" if settings['normalise'] == "date" else
"with the training statistics stored in the weights"}). Output: probability of change per pixel{
" averaged over the 8 flips and 90-degree rotations of the input" if settings['tta'] else ""};
change where it exceeds {result.threshold:.2f}.

## Data
Trained on: {', '.join(result.train_pairs)}.
Validated on (held out): {', '.join(result.val_pairs) or 'none'}.

## Recipe
| setting | value |
|---|---|
""" + "".join(f"| {k} | {v} |\n" for k, v in settings.items()) + f"""| torch | {torch.__version__} |

Balanced patch sampling ({sampling}), random 90-degree rotations and flips, per-band gain and
offset jitter of the after date, misregistration of up to {settings['max_shift']} pixel(s);
{settings['loss']} loss on labelled pixels; AdamW with cosine decay. Steps:
{len(result.step_losses)}; throughput {result.patches_per_s:.1f} patches/s on
{settings['device']}; wall time {result.seconds:.0f} s (training log: `{result.log.name}`).

Reproduce:

{command}

## Metrics (held-out pairs, pixel counts pooled)
{metrics}
{evaluation}
Final training loss (mean of the last epoch): {result.log_rows[-1]['train_loss']:.4f}.

## Limits
Trained at the pixel size and band set of its data only; other sensors, resolutions or seasons
need retraining. Labels mark urban change (OSCD) or building change (LEVIR-CD) only.
OSCD change maps are CC BY-NC-SA and LEVIR-CD is for academic use: weights trained on them
inherit those terms (not for commercial use).
"""
