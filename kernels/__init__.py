"""Numba-JIT layer kernels (forward and backward, float32, NCHW) and the paper's two networks.

The API follows PyTorch's names, signatures and parameter layouts; every layer also knows its
output shape, parameter count and FLOPs (2 per multiply-add; see :mod:`kernels.base`).
This package knows nothing of ``perfmodel``.
"""

from . import blas_env  # noqa: F401, I001 - must run before numpy loads OpenBLAS
from .activation import Dropout, LeakyReLU, ReLU
from .base import Layer, LayerCost, Ledger, ShapeError
from .conv import Conv2d, ConvTranspose2d
from .linear import Flatten, Linear
from .loss import CrossEntropyLoss, DetectionLoss, DetectionTarget, MSELoss
from .net import LayerTimer, Net, Sequential
from .nets import ClimateNet, climate_net, hep_net
from .optim import SGD
from .pool import GlobalAvgPool2d, MaxPool2d
from .threads import get_num_threads, max_threads, set_num_threads

NETS = {"hep": hep_net, "climate": climate_net}

__all__ = [
    "ClimateNet", "Conv2d", "ConvTranspose2d", "CrossEntropyLoss", "DetectionLoss",
    "DetectionTarget", "Dropout", "Flatten", "GlobalAvgPool2d", "Layer", "LayerCost",
    "LayerTimer", "Ledger", "LeakyReLU", "Linear", "MSELoss", "MaxPool2d", "NETS", "Net", "ReLU",
    "SGD", "Sequential", "ShapeError", "climate_net", "get_num_threads", "hep_net",
    "max_threads", "set_num_threads",
]
