"""Independent float64 numpy references for the layer tests.

Written from the definitions, not from the kernels: convolution as a sum over kernel taps of
shifted, strided views of the zero-padded input (einsum), transposed convolution as a scatter,
pooling over explicit windows. Gradients come from the same definitions (the adjoints).
"""

from __future__ import annotations

import numpy as np


def conv2d(x, w, b, stride, pad):
    n, c, h, wd = x.shape
    co, _, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, pad
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    ho = (h + 2 * ph - kh) // sh + 1
    wo = (wd + 2 * pw - kw) // sw + 1
    y = np.zeros((n, co, ho, wo))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
            y += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    if b is not None:
        y += b[None, :, None, None]
    return y


def conv2d_grads(x, w, dy, stride, pad):
    """(dx, dw, db) of conv2d by its adjoint: scatter dy back over the taps."""
    n, c, h, wd = x.shape
    co, _, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, pad
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    ho, wo = dy.shape[2:]
    for i in range(kh):
        for j in range(kw):
            sl = (slice(None), slice(None), slice(i, i + sh * (ho - 1) + 1, sh),
                  slice(j, j + sw * (wo - 1) + 1, sw))
            dw[:, :, i, j] = np.einsum("nohw,nchw->oc", dy, xp[sl])
            dxp[sl] += np.einsum("nohw,oc->nchw", dy, w[:, :, i, j])
    dx = dxp[:, :, ph:ph + h, pw:pw + wd]
    return dx, dw, dy.sum(axis=(0, 2, 3))


def conv_transpose2d(x, w, b, stride, pad, out_pad):
    """Scatter definition: y[o, ih*s - p + i, iw*s - p + j] += x[c, ih, iw] * w[c, o, i, j]."""
    n, c, h, wd = x.shape
    _, co, kh, kw = w.shape
    (sh, sw), (ph, pw), (oph, opw) = stride, pad, out_pad
    ho = (h - 1) * sh - 2 * ph + kh + oph
    wo = (wd - 1) * sw - 2 * pw + kw + opw
    full = np.zeros((n, co, (h - 1) * sh + kh + oph + ph, (wd - 1) * sw + kw + opw + pw))
    for i in range(kh):
        for j in range(kw):
            full[:, :, i:i + sh * (h - 1) + 1:sh, j:j + sw * (wd - 1) + 1:sw] += \
                np.einsum("nchw,co->nohw", x, w[:, :, i, j])
    y = full[:, :, ph:ph + ho, pw:pw + wo]
    if b is not None:
        y = y + b[None, :, None, None]
    return y


def conv_transpose2d_grads(x, w, dy, stride, pad, out_pad):
    n, c, h, wd = x.shape
    _, co, kh, kw = w.shape
    (sh, sw), (ph, pw), (oph, opw) = stride, pad, out_pad
    full_h = (h - 1) * sh + kh + oph + ph
    full_w = (wd - 1) * sw + kw + opw + pw
    dfull = np.zeros((n, co, full_h, full_w))
    ho, wo = dy.shape[2:]
    dfull[:, :, ph:ph + ho, pw:pw + wo] = dy
    dx = np.zeros_like(x)
    dw = np.zeros_like(w)
    for i in range(kh):
        for j in range(kw):
            g = dfull[:, :, i:i + sh * (h - 1) + 1:sh, j:j + sw * (wd - 1) + 1:sw]
            dx += np.einsum("nohw,co->nchw", g, w[:, :, i, j])
            dw[:, :, i, j] = np.einsum("nohw,nchw->co", g, x)
    return dx, dw, dy.sum(axis=(0, 2, 3))


def maxpool(x, k, s):
    n, c, h, w = x.shape
    ho, wo = (h - k) // s + 1, (w - k) // s + 1
    y = np.empty((n, c, ho, wo))
    dmask = np.zeros((n, c, ho, wo, h, w))
    for oh in range(ho):
        for ow in range(wo):
            win = x[:, :, oh * s:oh * s + k, ow * s:ow * s + k].reshape(n, c, -1)
            a = win.argmax(-1)
            y[:, :, oh, ow] = win.max(-1)
            ai, aj = a // k + oh * s, a % k + ow * s
            for ni in range(n):
                for ci in range(c):
                    dmask[ni, ci, oh, ow, ai[ni, ci], aj[ni, ci]] = 1.0
    return y, dmask


def softmax_xent(z, t):
    z = z - z.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    loss = -np.log(p[np.arange(len(t)), t]).mean()
    g = p.copy()
    g[np.arange(len(t)), t] -= 1
    return loss, g / len(t)
