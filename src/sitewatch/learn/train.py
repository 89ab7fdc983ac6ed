"""Train the change network on labelled pairs; write weights, a model card and a training log.

Recipe: balanced random patches with flips, rotations, radiometric jitter and a one-pixel
misregistration (:class:`sitewatch.learn.data.PatchSampler`); inputs standardised per band with
the training pixels' mean and standard deviation; binary cross-entropy on labelled pixels; Adam
(Kingma & Ba 2015) with a cosine learning-rate decay (Loshchilov & Hutter 2017). Validation on
held-out pairs (OSCD cities or LEVIR tiles) after every epoch by full-image tiled inference;
precision, recall, F1 and IoU pool the pixel counts of the held-out pairs, as OSCD papers do.
The decision threshold is the probability maximising validation F1 (0.5 without validation).

Everything random is seeded from ``seed``; on the CPU a rerun with the same arguments and
PyTorch version gives the same weights.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sitewatch.errors import SitewatchError
from sitewatch.learn.data import ChangePair, PatchSampler, read_pairs
from sitewatch.learn.infer import checkpoint, default_device, predict_probability
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


def _write_atomic(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as f:
        f.write(data)
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


def _validation_probabilities(network, pairs, mean, std) -> list[tuple[np.ndarray, np.ndarray]]:
    network.eval()
    out = []
    for pair in pairs:
        usable = pair.usable
        probability = predict_probability(network, pair.before, pair.after, usable,
                                          mean=mean, std=std)
        out.append((probability, np.where(usable, pair.truth, -1)))
    network.train()
    return out


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


def train(dataset_dir: str | Path, layout: str, out_dir: str | Path, *,
          bands: Sequence[str] | None = None, epochs: int = 30, patch: int = 64, batch: int = 16,
          lr: float = 1e-3, seed: int = 0, val_cities: Sequence[str] = (),
          device: str | None = None, steps_per_epoch: int | None = None,
          widths: Sequence[int] = (16, 32, 64)) -> TrainResult:
    """Train an FC-Siam-diff change network and write ``model.pt``, ``model-card.md`` and
    ``train-log.csv`` into ``out_dir``.

    Parameters
    ----------
    dataset_dir
        Folder in ``layout`` (``"oscd"`` or ``"levir"``, see :mod:`sitewatch.learn.data`).
    out_dir
        Output folder (created); existing outputs are replaced atomically.
    bands
        Band names to train on (default: all bands of the layout).
    epochs, steps_per_epoch
        Number of epochs and optimisation steps per epoch (default: as many steps as it takes
        for the patches to cover the training pixels once).
    patch, batch
        Patch side (pixels, a multiple of 4 for the default widths) and patches per step.
    lr
        Initial Adam learning rate, decayed to 0 by a cosine schedule.
    seed
        Seed of every random choice (patch sampling, augmentation, weight initialisation).
    val_cities
        Names of the pairs held out for validation (OSCD cities, LEVIR tile names).
    device
        Torch device (default: ``"cuda"`` when available, else ``"cpu"``).
    widths
        Channels of the network at each scale (see :class:`sitewatch.learn.model.SiameseUNet`).
    """
    started = time.perf_counter()
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    device = device or default_device()
    pairs = read_pairs(dataset_dir, layout, bands)
    train_pairs, val_pairs = _split(pairs, list(val_cities), dataset_dir)
    band_names = train_pairs[0].bands
    mean, std = band_statistics(train_pairs)
    torch.manual_seed(seed)
    network = SiameseUNet(len(band_names), widths)
    if patch % network.stride:
        raise SitewatchError(f"patch side {patch} is not a multiple of {network.stride} pixels")
    network.to(device).train()
    sampler = PatchSampler(train_pairs, patch, seed)
    if steps_per_epoch is None:
        pixels = sum(int(p.usable.sum()) for p in train_pairs)
        steps_per_epoch = max(1, pixels // (patch * patch * batch))
    optimiser = torch.optim.Adam(network.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, epochs * steps_per_epoch)
    mean_t = torch.from_numpy(mean.astype(np.float32))[None, :, None, None].to(device)
    std_t = torch.from_numpy(std.astype(np.float32))[None, :, None, None].to(device)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "train-log.csv"
    step_losses, log_rows, train_seconds = [], [], 0.0
    validation, threshold = {}, 0.5
    for epoch in range(1, epochs + 1):
        epoch_started, epoch_losses = time.perf_counter(), []
        for _ in range(steps_per_epoch):
            before, after, truth = (torch.from_numpy(x).to(device) for x in sampler.sample(batch))
            before = torch.nan_to_num((before - mean_t) / std_t)
            after = torch.nan_to_num((after - mean_t) / std_t)
            logits = network(before, after)[:, 0]
            labelled = truth >= 0
            loss = F.binary_cross_entropy_with_logits(logits[labelled],
                                                      truth[labelled].float())
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            epoch_losses.append(loss.item())
        seconds = time.perf_counter() - epoch_started
        train_seconds += seconds
        step_losses += epoch_losses
        if val_pairs:
            predictions = _validation_probabilities(network, val_pairs, mean, std)
            threshold = _best_threshold(predictions)
            validation = scores(sum(pixel_counts(p, t, threshold) for p, t in predictions))
        log_rows.append({"epoch": epoch, "steps": len(step_losses),
                         "train_loss": round(float(np.mean(epoch_losses)), 6),
                         **{f"val_{k}": round(v, 4) for k, v in validation.items()},
                         "learning_rate": schedule.get_last_lr()[0],
                         "seconds": round(seconds, 2),
                         "patches_per_s": round(steps_per_epoch * batch / seconds, 1)})
        text = io.StringIO()
        writer = csv.DictWriter(text, LOG_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(log_rows)
        _write_atomic(log_path, text.getvalue().encode())
    network.eval()
    weights_path = out_dir / "model.pt"
    buffer = io.BytesIO()
    torch.save(checkpoint(network, band_names, mean, std, threshold,
                          train_pairs[0].pixel_size_m), buffer)
    _write_atomic(weights_path, buffer.getvalue())
    result = TrainResult(weights=weights_path, card=out_dir / "model-card.md", log=log_path,
                         step_losses=step_losses, validation=validation, threshold=threshold,
                         patches_per_s=len(step_losses) * batch / max(train_seconds, 1e-9),
                         seconds=time.perf_counter() - started,
                         train_pairs=[p.name for p in train_pairs],
                         val_pairs=[p.name for p in val_pairs], log_rows=log_rows)
    recipe = {"layout": layout, "bands": band_names, "epochs": epochs,
              "steps_per_epoch": steps_per_epoch, "patch": patch, "batch": batch, "lr": lr,
              "seed": seed, "widths": list(network.widths), "device": device}
    _write_atomic(result.card, model_card(result, dataset_dir, recipe, network).encode())
    return result


def model_card(result: TrainResult, dataset_dir: Path, recipe: dict, network: SiameseUNet) -> str:
    """The model card (Mitchell et al. 2019, FAT*): data, recipe, metrics, limits, as Markdown."""
    parameters = sum(p.numel() for p in network.parameters())
    val = result.validation
    metrics = ("| precision | recall | F1 | IoU |\n|---|---|---|---|\n"
               f"| {val['precision']:.3f} | {val['recall']:.3f} | {val['f1']:.3f} | "
               f"{val['iou']:.3f} |" if val else "No pairs were held out: no validation metrics.")
    options = " ".join(f"--val-city {name}" for name in result.val_pairs)
    return f"""# sitewatch change model (FC-Siam-diff)

Weights: `{result.weights.name}` ({parameters} parameters). Use with
`SITEWATCH_MODEL={result.weights.name} sitewatch detect --method learned`.

## Architecture
Fully convolutional Siamese U-Net with feature differences as skip connections (FC-Siam-diff,
Caye Daudt, Le Saux & Boulch 2018, ICIP), widths {recipe['widths']}.
Input: bands {', '.join(recipe['bands'])} of both dates (reflectance 0..1, standardised with the
training statistics stored in the weights). Output: probability of change per pixel; change where
it exceeds {result.threshold:.2f}.

## Data
Dataset folder `{dataset_dir}`, layout `{recipe['layout']}`.
Trained on: {', '.join(result.train_pairs)}.
Validated on (held out): {', '.join(result.val_pairs) or 'none'}.

## Recipe
| setting | value |
|---|---|
""" + "".join(f"| {k} | {v} |\n" for k, v in recipe.items()) + f"""| torch | {torch.__version__} |

Balanced patch sampling (half the patches centred on a change pixel), random 90-degree rotations
and flips, per-band gain (+-5 %) and offset (+-0.01) jitter of the after date, up to one pixel of
misregistration; binary cross-entropy on labelled pixels; Adam with cosine decay.
Steps: {len(result.step_losses)}; throughput {result.patches_per_s:.1f} patches/s on
{recipe['device']}; wall time {result.seconds:.0f} s (training log: `{result.log.name}`).

Reproduce:

    sitewatch train {dataset_dir} --layout {recipe['layout']} --out <dir> \\
        --bands {','.join(recipe['bands'])} --epochs {recipe['epochs']} \\
        --steps-per-epoch {recipe['steps_per_epoch']} --patch {recipe['patch']} \\
        --batch {recipe['batch']} --lr {recipe['lr']} --seed {recipe['seed']} {options}

## Metrics (held-out pairs, pixel counts pooled)
{metrics}

The threshold was chosen on these same held-out pairs, so the figures are slightly optimistic.

Final training loss (mean of the last epoch): {result.log_rows[-1]['train_loss']:.4f}.

## Limits
Trained at {recipe['layout'].upper()} pixel size and band set only; other sensors, resolutions
or seasons need retraining. Labels mark urban change (OSCD) or building change (LEVIR-CD) only.
OSCD change maps are CC BY-NC-SA and LEVIR-CD is for academic use: weights trained on them
inherit those terms (not for commercial use).
"""
