"""cuda-emulated saves: storages tagged ``cuda:N`` on a host without a GPU.

``torch.save`` asks the location taggers registered in
``torch.serialization`` which device each storage lives on; registering one
that answers ``cuda:0`` (or ``cuda:1``, for a case whose spec has
``device_index: 1``) first writes exactly the tag a GPU save on that device
writes. Loads then behave as they would with a real GPU file: without
``map_location`` a CPU-only torch raises its real error, a host with fewer
GPUs than the index raises its own, and with ``map_location="cpu"`` it loads.
"""

from __future__ import annotations

import contextlib
import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["cuda_tag", "emulate_cuda", "file_has_tag"]

_PRIORITY = -1  # ahead of torch's own cpu (10) and cuda (20) taggers


def cuda_tag(index: int = 0) -> str:
    """The location tag torch.save writes for a storage on GPU `index`: ``cuda:0``, ``cuda:1``."""
    return f"cuda:{int(index)}"


def _never_restore(obj: Any, location: str) -> None:
    return None


@contextlib.contextmanager
def emulate_cuda(active: bool = True, index: int = 0) -> Iterator[None]:
    """Within the block, every storage torch.save writes is tagged ``cuda:<index>``."""
    if not active:
        yield
        return
    import torch.serialization as ser

    tag = cuda_tag(index)

    def tagger(obj: Any) -> str:
        return tag

    ser.register_package(_PRIORITY, tagger, _never_restore)
    try:
        yield
    finally:
        registry = ser._package_registry
        registry[:] = [entry for entry in registry if entry[1] is not tagger]


def _scan(data: bytes, pattern: re.Pattern[bytes], depth: int = 0) -> bool:
    if pattern.search(data):
        return True
    if depth < 2 and data[:4] == b"PK\x03\x04":
        with contextlib.suppress(zipfile.BadZipFile), zipfile.ZipFile(io.BytesIO(data)) as z:
            return any(_scan(z.read(name), pattern, depth + 1) for name in z.namelist())
    return False


def file_has_tag(path: Path, index: int = 0) -> bool:
    """Whether a saved file carries the ``cuda:<index>`` tag (also inside nested archives).

    ``cuda:1`` does not count as found inside ``cuda:10``.
    """
    pattern = re.compile(re.escape(cuda_tag(index).encode()) + rb"(?![0-9])")
    return _scan(Path(path).read_bytes(), pattern)
