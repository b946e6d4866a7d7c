"""Synthetic data sets shaped like the paper's, generated from a seed, stored as HDF5 shards.

* HEP: 3 channels on an (eta, phi) grid, as NERSC's benchmark: total energy deposit, EM
  fraction, track multiplicity. Events are sums of jets (Gaussian energy blobs). Signal
  (RPV-SUSY-like multi-jet) events carry 5-8 jets whose energies are spread evenly; background
  (QCD-like) events carry 2-4 jets with a steep energy fall-off plus soft pile-up. The jet
  counts overlap in total energy, so a classifier must learn the pattern, not the sum. Each
  channel is divided by its root mean square over the first shard (``NORMALIZATION``), so
  every input channel has unit second moment and empty pixels stay exactly 0. The original
  preprocessing divides by the maximum instead; with that, the 16-filter net at 32 px sat on
  the ln 2 plateau for ~400 updates and then wandered at held-out loss 0.40-0.45 for 2,000
  (batch 16, lr 0.01, momentum 0.9, 3 seeds), while RMS-scaled inputs reached 0.35 in 320-480.
  ``difficulty`` (0..1, default 0) makes the classes harder to tell apart: background jet
  counts reach up to 4 + round(3 d) and signal ones down to 5 - round(2 d), so multiplicities
  overlap, and pile-up grows denser and harder (density 0.02 (1 + 4 d), mean energy
  0.2 (1 + 4 d)). At 0 the events are exactly those of generator version 1.
* Climate: 16 channels of smooth random fields (low-frequency noise) carrying storms of 4
  classes (tropical depression, tropical cyclone, extra-tropical cyclone, atmospheric river),
  each a shape with its own channel signature and a bounding box; only a fraction of the images
  is labelled (semi-supervised). Targets are stored on the detection grid of the climate net.

Shards: ``shard_00000.h5`` ... (training; each rank reads shard rank mod shards) and
``val.h5`` (held-out events, drawn from their own seed stream, never trained on) each with datasets ``x`` (N, C, H, W) float32 and ``y`` (HEP
labels) or ``obj``/``cls``/``box``/``labelled`` (climate), plus attributes naming the generator,
seed and sizes. Each MPI rank reads its own shard (rank mod shards) through
:class:`ShardReader`, which prefetches the next batch on a thread and measures how long the
training loop waited for data.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

import kernels
from kernels import DetectionTarget

GENERATOR_VERSION = 1
CLIMATE_CLASSES = ("tropical_depression", "tropical_cyclone", "extratropical_cyclone",
                   "atmospheric_river")


def hep_events(n: int, image_size: int, rng: np.random.Generator, difficulty: float = 0.0
               ) -> tuple[np.ndarray, np.ndarray]:
    """(x, y): n events of 3 x image_size x image_size, unnormalized; y = 1 for signal.
    ``difficulty`` in [0, 1]: class overlap and pile-up (see the module docstring)."""
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty={difficulty} is out of range (allowed 0..1)")
    s = image_size
    sig_lo, bkg_hi = 5 - round(2 * difficulty), 4 + round(3 * difficulty)
    pile_density, pile_energy = 0.02 * (1 + 4 * difficulty), 0.2 * (1 + 4 * difficulty)
    y = rng.integers(0, 2, n)
    x = np.zeros((n, 3, s, s), np.float32)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    for i in range(n):
        sig = y[i] == 1
        n_jets = rng.integers(sig_lo, 9) if sig else rng.integers(2, bkg_hi + 1)
        total = rng.gamma(4.0, 25.0)
        if sig:
            e = rng.dirichlet(np.full(n_jets, 4.0)) * total
        else:
            e = np.sort(rng.dirichlet(np.full(n_jets, 0.7)))[::-1] * total
        for j in range(n_jets):
            cy, cx = rng.uniform(0, s, 2)
            width = s * rng.uniform(0.015, 0.04)
            d2 = (yy - cy) ** 2 + np.minimum(np.abs(xx - cx), s - np.abs(xx - cx)) ** 2
            blob = np.exp(-d2 / (2 * width**2)).astype(np.float32)
            x[i, 0] += e[j] * blob
            x[i, 1] += rng.uniform(0.2, 0.9) * e[j] * blob
            x[i, 2] += rng.poisson(max(e[j] / 5.0, 0.5)) * blob
        x[i, 0] += rng.exponential(pile_energy, (s, s)) * (rng.random((s, s)) < pile_density)
        x[i, 1] = np.where(x[i, 0] > 1e-6, x[i, 1] / np.maximum(x[i, 0], 1e-6), 0.0)
    # calorimeter images are sparse with exact zeros; the Gaussian tails would otherwise leave
    # denormal floats, which x86 computes on dozens of times slower
    x[x < 1e-6 * x.max()] = 0.0
    return x, y


def _smooth_field(rng: np.random.Generator, h: int, w: int, scale: int = 8) -> np.ndarray:
    coarse = rng.standard_normal((h // scale + 2, w // scale + 2))
    yi = np.linspace(0, coarse.shape[0] - 1.001, h)
    xi = np.linspace(0, coarse.shape[1] - 1.001, w)
    y0, x0 = yi.astype(int), xi.astype(int)
    fy, fx = (yi - y0)[:, None], (xi - x0)[None, :]
    c = coarse
    return ((1 - fy) * (1 - fx) * c[y0][:, x0] + fy * (1 - fx) * c[y0 + 1][:, x0]
            + (1 - fy) * fx * c[y0][:, x0 + 1] + fy * fx * c[y0 + 1][:, x0 + 1])


def climate_events(n: int, image_size: int, grid: tuple[int, int], labelled_fraction: float,
                   rng: np.random.Generator) -> dict[str, np.ndarray]:
    """16-channel fields with storms; targets on the detection ``grid`` (Gh, Gw)."""
    h = w = image_size
    gh, gw = grid
    x = np.empty((n, 16, h, w), np.float32)
    obj = np.zeros((n, gh, gw), np.int8)
    cls = np.zeros((n, gh, gw), np.int64)
    box = np.zeros((n, 4, gh, gw), np.float32)
    signature = rng.normal(0, 1, (4, 16)).astype(np.float32)  # how each class shows per channel
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(n):
        for c in range(16):
            x[i, c] = _smooth_field(rng, h, w)
        for _ in range(rng.integers(0, 4)):
            k = rng.integers(0, 4)
            bh = h * (rng.uniform(0.3, 0.6) if k == 3 else rng.uniform(0.06, 0.2))
            bw = w * (rng.uniform(0.05, 0.1) if k == 3 else rng.uniform(0.06, 0.2))
            cy, cx = rng.uniform(bh / 2, h - bh / 2), rng.uniform(bw / 2, w - bw / 2)
            shape = np.exp(-(((yy - cy) / (bh / 2)) ** 2 + ((xx - cx) / (bw / 2)) ** 2) * 2)
            x[i] += 3.0 * signature[k][:, None, None] * shape[None].astype(np.float32)
            gy, gx = min(int(cy / h * gh), gh - 1), min(int(cx / w * gw), gw - 1)
            obj[i, gy, gx] = 1
            cls[i, gy, gx] = k
            box[i, :, gy, gx] = (cy / h * gh - gy, cx / w * gw - gx,
                                 np.log(bh / h * gh), np.log(bw / w * gw))
    labelled = rng.random(n) < labelled_fraction
    return dict(x=x, obj=obj, cls=cls, box=box, labelled=labelled)


VAL_FILE = "val.h5"
NORMALIZATION = "rms"  # HEP channels over their root mean square (see the module docstring)
VAL_STREAM = 2**20  # seed-stream index of the held-out events (training shards use 0, 1, ...)


def write_dataset(out: str | os.PathLike, net: str, samples: int, image_size: int,
                  shards: int = 1, seed: int = 0, labelled_fraction: float = 0.5,
                  progress=None, difficulty: float = 0.0, val_samples: int = 0
                  ) -> list[Path]:
    """Generate ``samples`` training events into ``shards`` HDF5 files and ``val_samples``
    held-out events into ``val.h5`` (each file written atomically); returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    per = [samples // shards + (1 if i < samples % shards else 0) for i in range(shards)]
    paths = []
    norm = None
    jobs = [(f"shard_{k:05d}.h5", k, n) for k, n in enumerate(per)]
    if val_samples:
        jobs.append((VAL_FILE, VAL_STREAM, val_samples))
    for name, k, n in jobs:
        rng = np.random.default_rng([seed, k])
        if net == "hep":
            x, y = hep_events(n, image_size, rng, difficulty)
            if norm is None:  # per-channel RMS of the first shard scales every shard
                norm = np.maximum(np.sqrt((x.astype(np.float64) ** 2).mean(axis=(0, 2, 3))),
                                  1e-12)
            arrays: dict[str, Any] = dict(x=(x / norm[None, :, None, None]).astype(np.float32),
                                          y=y)
        else:
            grid = kernels.climate_net(image_size, filters=(1,) * 6,
                                       decoder_filters=(1,) * 4).grid_shape()[2:]
            arrays = climate_events(n, image_size, grid, labelled_fraction, rng)
        path = out / name
        tmp = path.with_suffix(".h5.tmp")
        with h5py.File(tmp, "w") as f:
            for name, a in arrays.items():
                f.create_dataset(name, data=a)
            f.attrs.update(net=net, seed=seed, shard=k, shards=shards, samples=n,
                           image_size=image_size, generator_version=GENERATOR_VERSION,
                           difficulty=difficulty, held_out=name == VAL_FILE,
                           normalization=NORMALIZATION if net == "hep" else "none")
        os.replace(tmp, path)
        paths.append(path)
        if progress:
            progress(name)
    return paths


def dataset_matches(folder: str | os.PathLike, difficulty: float = 0.0,
                    need_val: bool = False) -> bool:
    """True when ``folder`` holds shards of this generator at ``difficulty`` (and the held-out
    file when ``need_val``): a sweep reuses such a data set and regenerates any other."""
    folder = Path(folder)
    shards = sorted(folder.glob("shard_*.h5"))
    if not shards or (need_val and not (folder / VAL_FILE).exists()):
        return False
    with h5py.File(shards[0], "r") as f:
        return (int(f.attrs.get("generator_version", 0)) == GENERATOR_VERSION
                and float(f.attrs.get("difficulty", 0.0)) == float(difficulty)
                and (f.attrs["net"] != "hep"
                     or f.attrs.get("normalization", "max") == NORMALIZATION))


def load_held_out(folder: str | os.PathLike, samples: int | None = None
                  ) -> tuple[np.ndarray, Any] | None:
    """The held-out events of ``folder/val.h5`` (at most ``samples``) as (x, targets), or None
    when the data set has none."""
    path = Path(folder) / VAL_FILE
    if not path.exists():
        return None
    with h5py.File(path, "r") as f:
        n = int(f["x"].shape[0]) if samples is None else min(samples, int(f["x"].shape[0]))
        x = f["x"][:n]
        if f.attrs["net"] == "hep":
            return x, f["y"][:n]
        return x, DetectionTarget(obj=f["obj"][:n], cls=f["cls"][:n], box=f["box"][:n],
                                  labelled=f["labelled"][:n])


class ShardReader:
    """Batches from one shard, cycling, with the next batch read on a background thread.

    ``wait_s`` accumulates the time the caller waited for a batch (I/O not hidden behind
    compute). Targets are returned as the net's training API expects them.
    """

    def __init__(self, path: str | os.PathLike, batch: int, seed: int = 0,
                 prefetch: int = 2, shuffle: bool = True) -> None:
        self.path = Path(path)
        self.batch = batch
        self._f = h5py.File(self.path, "r")
        self.net = self._f.attrs["net"]
        self.samples = int(self._f["x"].shape[0])
        if self.samples < batch:
            raise ValueError(f"{self.path}: {self.samples} samples, fewer than the batch {batch}")
        self._rng = np.random.default_rng(seed)
        self.shuffle = shuffle
        self._q: queue.Queue = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self.wait_s = 0.0
        self._t = threading.Thread(target=self._fill, daemon=True)
        self._t.start()

    def _read(self, start: int) -> tuple[np.ndarray, Any]:
        sl = slice(start, start + self.batch)
        f = self._f
        x = f["x"][sl]
        if self.net == "hep":
            return x, f["y"][sl]
        return x, DetectionTarget(obj=f["obj"][sl], cls=f["cls"][sl], box=f["box"][sl],
                                  labelled=f["labelled"][sl])

    def _fill(self) -> None:
        starts = np.arange(0, self.samples - self.batch + 1, self.batch)
        while not self._stop.is_set():
            for s in (self._rng.permutation(starts) if self.shuffle else starts):
                if self._stop.is_set():
                    return
                item = self._read(int(s))
                while not self._stop.is_set():
                    try:
                        self._q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue

    def next(self) -> tuple[np.ndarray, Any]:
        t = time.perf_counter()
        item = self._q.get()
        self.wait_s += time.perf_counter() - t
        return item

    def __iter__(self) -> Iterator[tuple[np.ndarray, Any]]:
        while True:
            yield self.next()

    def close(self) -> None:
        self._stop.set()
        self._t.join(timeout=5)
        self._f.close()
