"""Scenario keys that were renamed: the old names are still read, with a note.

The rate, the peak and the batch of a scenario's compute are those of one device (a GPU, or a
CPU node of one rank), so their keys say ``device_``; the ``node_`` names they had are read for
now and each prints a deprecation note (a :class:`FutureWarning`, one line on stderr in the
``perfmodel`` command).
"""

from __future__ import annotations

import warnings

from ..ui import UserError

#: keys renamed for what they are: (section, old name) -> new name. The old names are still
#: read, with a note (a FutureWarning) saying what to write instead.
RENAMED = {("cluster", f"node_{k}"): f"device_{k}" for k in (
    "peak_flops", "flops", "samples_per_s", "batch", "half_batch", "rate_shape")}


def current_key(sec: str, key: str, source: str = "scenario") -> str:
    """The schema's name of ``sec.key``: a renamed key's new name, with a deprecation note."""
    new = RENAMED.get((sec, key))
    if new is None:
        return key
    warnings.warn(f"{source}: {sec}.{key} is now {sec}.{new} (the rate, peak and batch of one "
                  f"device, not of a node); the old name is read for now", FutureWarning,
                  stacklevel=3)
    return new


def apply_renames(raw: dict, source: str) -> None:
    """Move renamed keys of a raw scenario to their new names (in place), each with its note;
    both names at once is an error."""
    for sec, keys in raw.items():
        if not isinstance(keys, dict):
            continue
        for key in [k for k in keys if (sec, k) in RENAMED]:
            new = current_key(sec, key, source)
            if new in keys:
                raise UserError(f"{source}: {sec}.{key} and {sec}.{new} are the same key "
                                f"(the old name and the new): give {sec}.{new} only")
            keys[new] = keys.pop(key)
