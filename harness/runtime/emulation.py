"""cuda-emulated saves: storages tagged ``cuda:0`` on a host without a GPU.

``torch.save`` asks the location taggers registered in
``torch.serialization`` which device each storage lives on; registering one
that answers ``cuda:0`` first writes exactly the tag a GPU save writes. Loads
then behave as they would with a real GPU file: without ``map_location`` a
CPU-only torch raises its real error, with ``map_location="cpu"`` it loads.
"""

from __future__ import annotations

import contextlib
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["TAG", "emulate_cuda", "file_has_tag"]

TAG = "cuda:0"
_PRIORITY = -1  # ahead of torch's own cpu (10) and cuda (20) taggers


def _tag(obj: Any) -> str:
    return TAG


def _never_restore(obj: Any, location: str) -> None:
    return None


@contextlib.contextmanager
def emulate_cuda(active: bool = True) -> Iterator[None]:
    """Within the block, every storage torch.save writes is tagged cuda:0."""
    if not active:
        yield
        return
    import torch.serialization as ser

    ser.register_package(_PRIORITY, _tag, _never_restore)
    try:
        yield
    finally:
        registry = ser._package_registry
        registry[:] = [entry for entry in registry if entry[1] is not _tag]


def _scan(data: bytes, depth: int = 0) -> bool:
    if TAG.encode() in data:
        return True
    if depth < 2 and data[:4] == b"PK\x03\x04":
        with contextlib.suppress(zipfile.BadZipFile), zipfile.ZipFile(io.BytesIO(data)) as z:
            return any(_scan(z.read(name), depth + 1) for name in z.namelist())
    return False


def file_has_tag(path: Path) -> bool:
    """Whether a saved file carries the cuda:0 tag (also inside nested archives)."""
    return _scan(Path(path).read_bytes())
