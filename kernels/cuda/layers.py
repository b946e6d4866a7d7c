"""The nets' layers on a CUDA device, behind the CPU layers' API and ledger.

Each device layer wraps its CPU layer: the same name, kind, shapes and FLOP (``cost`` is the
CPU layer's, so the ledger is one), the parameters copied to the device once; ``forward`` and
``backward`` take and return device arrays (``numba.cuda`` DeviceNDArray), which stay on the
device between layers. ``backward`` fills the device gradients in place. The loss runs on the
host: its input (the logits, batch x classes) is copied over and its gradient copied back,
a few hundred bytes per step for the HEP net. The SGD step runs on the device.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from .. import activation, conv, linear, pool
from ..base import Layer
from . import ops

F32 = np.float32


def _zeros(shape, dtype=F32):
    return cuda.to_device(np.zeros(shape, dtype))


class CudaLayer:
    """A CPU layer's twin on the device: its ledger entry and parameters, device compute."""

    def __init__(self, cpu: Layer) -> None:
        self.cpu = cpu
        self.name, self.kind = cpu.name, cpu.kind
        self.needs_input_grad = cpu.needs_input_grad
        self.training = True
        self.weight = self.bias = self.grad_weight = self.grad_bias = None
        for p in ("weight", "bias"):
            w = getattr(cpu, p, None)
            if w is not None:
                setattr(self, p, cuda.to_device(np.ascontiguousarray(w, F32)))
                setattr(self, "grad_" + p, _zeros(w.shape))

    def cost(self, input_shape):
        return self.cpu.cost(input_shape)

    def output_shape(self, input_shape):
        return self.cpu.output_shape(input_shape)

    def params(self) -> list[tuple[str, object, object]]:
        return [(p, getattr(self, p), getattr(self, "grad_" + p)) for p in ("weight", "bias")
                if getattr(self, p) is not None]

    def param_count(self) -> int:
        return self.cpu.param_count()

    def to_host(self) -> Layer:
        """Copy the device parameters back into the CPU layer, and return it."""
        for p, w, g in self.params():
            getattr(self.cpu, p)[...] = w.copy_to_host()
            getattr(self.cpu, "grad_" + p)[...] = g.copy_to_host()
        return self.cpu


class CudaConv2d(CudaLayer):
    def forward(self, x):
        l = self.cpu
        b, c, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw) = l.kernel_size, l.stride, l.padding
        _, co, ho, wo = l.output_shape(x.shape)
        cols = cuda.device_array((c * kh * kw, b * ho * wo), F32)
        ops.im2col[ops.blocks(cols.size), ops.THREADS](x, kh, kw, sh, sw, ph, pw, ho, wo, cols)
        y2 = cuda.device_array((co, b * ho * wo), F32)
        ops.matmul(self.weight.reshape(co, c * kh * kw), cols, y2)
        y = cuda.device_array((b, co, ho, wo), F32)
        bias = self.bias if self.bias is not None else _zeros(1)
        ops.to_nchw[ops.blocks(y.size), ops.THREADS](y2, bias, self.bias is not None,
                                                     y.reshape(b, co, ho * wo))
        self._x, self._cols, self._geo = x, cols, (kh, kw, sh, sw, ph, pw, ho, wo)
        return y

    def backward(self, dy):
        b, co, ho, wo = dy.shape
        kh, kw, sh, sw, ph, pw, _, _ = self._geo
        c = self._x.shape[1]
        d2 = cuda.device_array((co, b * ho * wo), F32)
        ops.from_nchw[ops.blocks(dy.size), ops.THREADS](dy.reshape(b, co, ho * wo), d2)
        ops.matmul(d2, self._cols, self.grad_weight.reshape(co, c * kh * kw), trans_b=True)
        if self.bias is not None:
            ops.row_sums[ops.blocks(co), ops.THREADS](d2, self.grad_bias)
        dx = None
        if self.needs_input_grad:
            dcols = cuda.device_array(self._cols.shape, F32)
            ops.matmul(self.weight.reshape(co, c * kh * kw), d2, dcols, trans_a=True)
            dx = cuda.device_array(self._x.shape, F32)
            ops.col2im[ops.blocks(dx.size), ops.THREADS](dcols, kh, kw, sh, sw, ph, pw, ho, wo,
                                                         dx)
        self._x = self._cols = None
        return dx


class CudaConvTranspose2d(CudaLayer):
    """The adjoint of a convolution: columns from the weights transposed times the input,
    folded by col2im into the output; backward unfolds the output gradient with im2col."""

    def forward(self, x):
        l = self.cpu
        b, ci, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw) = l.kernel_size, l.stride, l.padding
        _, co, ho, wo = l.output_shape(x.shape)
        x2 = cuda.device_array((ci, b * h * w), F32)
        ops.from_nchw[ops.blocks(x.size), ops.THREADS](x.reshape(b, ci, h * w), x2)
        cols = cuda.device_array((co * kh * kw, b * h * w), F32)
        ops.matmul(self.weight.reshape(ci, co * kh * kw), x2, cols, trans_a=True)
        y = cuda.device_array((b, co, ho, wo), F32)
        ops.col2im[ops.blocks(y.size), ops.THREADS](cols, kh, kw, sh, sw, ph, pw, h, w, y)
        if self.bias is not None:
            y2 = cuda.device_array((co, b * ho * wo), F32)
            ops.from_nchw[ops.blocks(y.size), ops.THREADS](y.reshape(b, co, ho * wo), y2)
            ops.to_nchw[ops.blocks(y.size), ops.THREADS](y2, self.bias, True,
                                                         y.reshape(b, co, ho * wo))
        self._x2, self._geo = x2, (x.shape, kh, kw, sh, sw, ph, pw)
        return y

    def backward(self, dy):
        (b, ci, h, w), kh, kw, sh, sw, ph, pw = self._geo
        co, ho, wo = dy.shape[1], dy.shape[2], dy.shape[3]
        cols = cuda.device_array((co * kh * kw, b * h * w), F32)
        ops.im2col[ops.blocks(cols.size), ops.THREADS](dy, kh, kw, sh, sw, ph, pw, h, w, cols)
        ops.matmul(self._x2, cols, self.grad_weight.reshape(ci, co * kh * kw), trans_b=True)
        if self.bias is not None:
            d2 = cuda.device_array((co, b * ho * wo), F32)
            ops.from_nchw[ops.blocks(dy.size), ops.THREADS](dy.reshape(b, co, ho * wo), d2)
            ops.row_sums[ops.blocks(co), ops.THREADS](d2, self.grad_bias)
        dx = None
        if self.needs_input_grad:
            dx2 = cuda.device_array((ci, b * h * w), F32)
            ops.matmul(self.weight.reshape(ci, co * kh * kw), cols, dx2)
            dx = cuda.device_array((b, ci, h, w), F32)
            ops.to_nchw[ops.blocks(dx.size), ops.THREADS](dx2, _zeros(1), False,
                                                          dx.reshape(b, ci, h * w))
        self._x2 = None
        return dx


class CudaLeakyReLU(CudaLayer):
    def forward(self, x):
        y = cuda.device_array(x.shape, F32)
        ops.leaky_relu[ops.blocks(x.size), ops.THREADS](x.reshape(x.size), self.cpu.negative_slope,
                                                        y.reshape(y.size))
        self._y = y
        return y

    def backward(self, dy):
        dx = cuda.device_array(dy.shape, F32)
        ops.leaky_relu_grad[ops.blocks(dy.size), ops.THREADS](
            self._y.reshape(dy.size), dy.reshape(dy.size), self.cpu.negative_slope,
            dx.reshape(dx.size))
        self._y = None
        return dx


class CudaDropout(CudaLayer):
    """Inverted dropout with a counter-based mask (ops.dropout): not the CPU layer's random
    stream, the same distribution; a new seed every forward."""

    def __init__(self, cpu: Layer, seed: int = 0) -> None:
        super().__init__(cpu)
        self.seed = (int(seed) * 1_000_003 + 1) & 0x3FFFFFFF

    def forward(self, x):
        p = self.cpu.p
        if not self.training or p == 0:
            self._keep = None
            return x
        self.seed = (self.seed + 1) & 0x3FFFFFFF
        y = cuda.device_array(x.shape, F32)
        self._keep = cuda.device_array(x.shape, np.int8)
        ops.dropout[ops.blocks(x.size), ops.THREADS](x.reshape(x.size), self.seed, p,
                                                     1.0 / (1.0 - p), y.reshape(y.size),
                                                     self._keep.reshape(x.size))
        return y

    def backward(self, dy):
        if self._keep is None:
            return dy
        dx = cuda.device_array(dy.shape, F32)
        ops.dropout_grad[ops.blocks(dy.size), ops.THREADS](
            dy.reshape(dy.size), self._keep.reshape(dy.size), 1.0 / (1.0 - self.cpu.p),
            dx.reshape(dx.size))
        return dx


class CudaMaxPool2d(CudaLayer):
    def forward(self, x):
        (kh, kw), (sh, sw) = self.cpu.kernel_size, self.cpu.stride
        out = self.cpu.output_shape(x.shape)
        y = cuda.device_array(out, F32)
        self._arg = cuda.device_array(out, np.int32)
        ops.maxpool[ops.blocks(y.size), ops.THREADS](x, kh, kw, sh, sw, y, self._arg)
        self._shape = x.shape
        return y

    def backward(self, dy):
        (kh, kw), (sh, sw) = self.cpu.kernel_size, self.cpu.stride
        dx = cuda.device_array(self._shape, F32)
        ops.maxpool_grad[ops.blocks(dx.size), ops.THREADS](dy, self._arg, kh, kw, sh, sw, dx)
        return dx


class CudaGlobalAvgPool2d(CudaLayer):
    def forward(self, x):
        b, c, h, w = x.shape
        y = cuda.device_array((b, c), F32)
        ops.global_avgpool[ops.blocks(b * c), ops.THREADS](x.reshape(b, c, h * w), y)
        self._shape = x.shape
        return y

    def backward(self, dy):
        b, c, h, w = self._shape
        dx = cuda.device_array(self._shape, F32)
        ops.global_avgpool_grad[ops.blocks(dx.size), ops.THREADS](dy, dx.reshape(b, c, h * w))
        return dx


class CudaLinear(CudaLayer):
    def forward(self, x):
        x = x.reshape(x.shape[0], x.size // x.shape[0])
        y = cuda.device_array((x.shape[0], self.cpu.out_features), F32)
        ops.matmul(x, self.weight, y, trans_b=True)
        if self.bias is not None:
            ops.add_bias_rows[ops.blocks(y.size), ops.THREADS](y, self.bias)
        self._x = x
        return y

    def backward(self, dy):
        ops.matmul(dy, self._x, self.grad_weight, trans_a=True)
        if self.bias is not None:
            ops.col_sums[ops.blocks(dy.shape[1]), ops.THREADS](dy, self.grad_bias)
        dx = None
        if self.needs_input_grad:
            dx = cuda.device_array(self._x.shape, F32)
            ops.matmul(dy, self.weight, dx)
        self._x = None
        return dx


#: the CPU layer classes and their device twins (ReLU is a LeakyReLU of slope 0)
TWINS = [(conv.Conv2d, CudaConv2d), (conv.ConvTranspose2d, CudaConvTranspose2d),
         (activation.LeakyReLU, CudaLeakyReLU), (activation.Dropout, CudaDropout),
         (pool.MaxPool2d, CudaMaxPool2d), (pool.GlobalAvgPool2d, CudaGlobalAvgPool2d),
         (linear.Linear, CudaLinear)]


def to_device(layer: Layer, seed: int = 0) -> CudaLayer:
    """The device twin of a CPU layer (a TypeError names a layer without one)."""
    for cpu_cls, dev_cls in TWINS:
        if isinstance(layer, cpu_cls):
            return dev_cls(layer, seed) if dev_cls is CudaDropout else dev_cls(layer)
    raise TypeError(f"no CUDA kernel for {type(layer).__name__} ({layer.name})")
