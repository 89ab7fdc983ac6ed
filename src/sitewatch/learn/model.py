"""A small fully convolutional Siamese change network (FC-Siam-diff).

The architecture follows Caye Daudt, Le Saux & Boulch (2018), "Fully convolutional Siamese
networks for change detection", ICIP, pp. 4063-4067: one encoder with shared weights reads both
dates; at every scale the absolute difference of the two dates' features is the skip connection
of a U-Net decoder (Ronneberger, Fischer & Brox 2015, MICCAI). It is deliberately small (widths
16-32-64 by default, ~0.1 M parameters) so that it trains on a CPU and runs on any band count:
13 Sentinel-2 bands or 3 RGB bands.

Input sides must be multiples of :attr:`SiameseUNet.stride` (pixels); :mod:`sitewatch.learn.infer`
pads tiles accordingly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 convolutions, each followed by batch normalisation and ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SiameseUNet(nn.Module):
    """FC-Siam-diff: shared encoder, feature differences as skips, one change logit per pixel.

    Parameters
    ----------
    in_bands
        Number of spectral bands of each date.
    widths
        Feature channels at each scale, finest first; scale ``i`` has ``2**i`` times the pixel
        size of the input.

    Notes
    -----
    ``forward(before, after)`` takes two (batch, in_bands, rows, cols) tensors and returns
    (batch, 1, rows, cols) logits (log-odds of change).
    """

    def __init__(self, in_bands: int, widths: Sequence[int] = (16, 32, 64)):
        super().__init__()
        self.in_bands = int(in_bands)
        self.widths = tuple(int(w) for w in widths)
        self.encoder = nn.ModuleList()
        previous = self.in_bands
        for width in self.widths:
            self.encoder.append(_conv_block(previous, width))
            previous = width
        self.pool = nn.MaxPool2d(2)
        self.upsample = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for coarse, fine in zip(self.widths[:0:-1], self.widths[-2::-1], strict=True):
            self.upsample.append(nn.ConvTranspose2d(coarse, fine, 2, stride=2))
            self.decoder.append(_conv_block(2 * fine, fine))
        self.head = nn.Conv2d(self.widths[0], 1, 1)

    @property
    def stride(self) -> int:
        """Input sides must be multiples of this many pixels."""
        return 2 ** (len(self.widths) - 1)

    def _encode(self, image: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for level, block in enumerate(self.encoder):
            image = block(image if level == 0 else self.pool(image))
            features.append(image)
        return features

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        differences = [torch.abs(a - b) for b, a in
                       zip(self._encode(before), self._encode(after), strict=True)]
        x = differences[-1]
        for upsample, block, skip in zip(self.upsample, self.decoder, differences[-2::-1],
                                         strict=True):
            x = block(torch.cat([upsample(x), skip], dim=1))
        return self.head(x)
