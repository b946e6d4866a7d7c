"""Stride-1 convolution of one image as a sum of GEMMs over shifted windows, no im2col.

Zero-pad the image into a flat buffer of rows ``Wp = W + 2*pw`` wide. The input element under
tap (i, j) of output pixel (oh, ow) is then at flat offset ``(oh*Wp + ow) + (i*Wp + j)``, so
for each tap the inputs of all output pixels, laid out ``Ho`` rows of ``Wp``, are one strided
window ``xp[:, i*Wp + j : i*Wp + j + Ho*Wp]`` of the buffer, and

    out_p (Co, Ho*Wp) = sum over taps of w[:, :, i, j] (Co, C) @ that window (C, Ho*Wp)

The last ``kw - 1`` columns of each output row read past the row's end into the next one;
they are dropped when ``out_p`` is copied out. The kh*kw GEMMs accumulate (beta = 1) into
``out_p``, which is one image's output and stays in cache, instead of writing and reading
back a column matrix kh*kw times the input's size (HEP conv2 at 224x224, batch 8: 462 MB per
pass). Needs :data:`kernels.blas.AVAILABLE`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import blas


class ShiftedConv:
    """Buffers for :meth:`run` on images of one shape: the padded image (its borders are
    zeroed once and never written) and the padded-width output."""

    def __init__(self, channels: int, h: int, w: int, out_channels: int, kh: int, kw: int,
                 ph: int, pw: int, dtype=np.float32) -> None:
        self.c, self.h, self.w, self.co = channels, h, w, out_channels
        self.kh, self.kw, self.ph, self.pw = kh, kw, ph, pw
        self.wp = w + 2 * pw
        self.ho, self.wo = h + 2 * ph - kh + 1, self.wp - kw + 1
        if self.ho < 1 or self.wo < 1:
            raise ValueError(f"ShiftedConv: a {kh}x{kw} kernel does not fit a {h}x{w} image "
                             f"padded by ({ph}, {pw})")
        hp = h + 2 * ph
        self.xp = np.zeros((channels, hp * self.wp + kw - 1), dtype)
        self.interior = self.xp[:, :hp * self.wp].reshape(channels, hp, self.wp)[
            :, ph:ph + h, pw:pw + w]
        self.out_p = np.empty((out_channels, self.ho * self.wp), dtype)

    def run(self, x: np.ndarray, taps: np.ndarray, out: np.ndarray,
            clock: Callable[[str], None] = lambda part: None) -> None:
        """``out`` (Co, Ho, Wo) = the convolution of ``x`` (C, H, W) with ``taps`` (kh, kw,
        Co, C), each tap's (Co, C) matrix contiguous: ``weight.transpose(2, 3, 0, 1)`` of a
        (Co, C, kh, kw) weight. ``clock(part)`` is called after the copy in ("layout"), the
        GEMMs ("gemm") and the copy out ("layout")."""
        np.copyto(self.interior, x)
        clock("layout")
        n = self.ho * self.wp
        for i in range(self.kh):
            for j in range(self.kw):
                off = i * self.wp + j
                blas.sgemm(taps[i, j], self.xp[:, off:off + n], self.out_p,
                           beta=0.0 if i == j == 0 else 1.0)
        clock("gemm")
        np.copyto(out, self.out_p.reshape(self.co, self.ho, self.wp)[:, :, :self.wo])
        clock("layout")
