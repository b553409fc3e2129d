"""Envs: where code runs, named by a label and described by a fingerprint.

The *label* (``torch-2.5.1-py3.11-cpu``) names an env in paths, results and
reports. The *fingerprint* records what was really found at run time, so a
session can refuse to run when the torch it got is not the torch it asked for.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from dataclasses import asdict, dataclass
from typing import Any, Optional

from harness.runtime.errors import InputError

__all__ = [
    "DEVICES",
    "LOAD_DEVICES",
    "GOLDEN_PREFIX",
    "Fingerprint",
    "check_device",
    "check_expected_torch",
    "require_torch",
    "cuda_available",
    "fingerprint",
    "label_for",
    "parse_label",
]

#: Devices a save can run on; ``cuda-emulated`` tags storages ``cuda:0`` on a
#: CPU-only host so "saved on a GPU, deployed on a CPU" is tested anywhere.
DEVICES = ("cpu", "cuda", "cuda-emulated")
#: Devices a load can run on.
LOAD_DEVICES = ("cpu", "cuda")

#: Prefix of a golden corpus source (harness/golden.py): a file saved by that
#: env when the corpus was made, kept in the repository.
GOLDEN_PREFIX = "golden-"
_LABEL = re.compile(r"^(?:golden-)?torch-(?P<torch>[0-9][0-9A-Za-z.]*)-py(?P<python>\d+\.\d+)-(?P<device>cpu|cuda|cuda-emulated)$")


@dataclass(frozen=True)
class Fingerprint:
    """What an env really is, read at run time."""

    label: str
    torch: str
    torch_git: str
    cuda: str | None
    cuda_devices: list[str]
    python: str
    numpy: str | None
    platform: str
    machine: str
    device: str
    harness: str
    threads: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fingerprint:
        kw: dict[str, Any] = {k: data.get(k) for k in cls.__dataclass_fields__}
        return cls(**kw)

    @property
    def compute_key(self) -> str:
        """Envs with equal keys run the same kernels: forward outputs must agree bit for bit."""
        dev = "cuda" if self.device == "cuda" else "cpu"
        return f"{self.torch}|{self.torch_git}|{self.machine}|{dev}|threads={self.threads}"


def _torch_release(version: str) -> str:
    # "2.4.1+cu121" -> "2.4.1": the local part names the build, not the release.
    return version.split("+", 1)[0]


def label_for(torch_version: str, python: str, device: str) -> str:
    """The env label, e.g. ``torch-2.5.1-py3.11-cuda-emulated``."""
    return f"torch-{_torch_release(torch_version)}-py{python}-{device}"


def parse_label(label: str) -> dict[str, str]:
    """Split a label into torch, python and device; InputError if it is not one."""
    m = _LABEL.match(label)
    if not m:
        msg = f"label={label!r} is not an env label like 'torch-2.5.1-py3.11-cpu'"
        raise InputError(msg)
    return m.groupdict()


def cuda_available() -> bool:
    import torch

    try:
        return bool(torch.cuda.is_available())
    except Exception:  # a broken driver is the same as no GPU for us
        return False


def check_device(device: str, *, for_load: bool = False) -> None:
    """Refuse a device this env cannot use, with the reason and the way out."""
    allowed = LOAD_DEVICES if for_load else DEVICES
    if device not in allowed:
        msg = f"--device={device!r} is not one of {', '.join(allowed)}"
        raise InputError(msg)
    if device == "cuda" and not cuda_available():
        hint = "" if for_load else " (use --device cuda-emulated to tag storages cuda:0 on a CPU-only host)"
        msg = f"--device=cuda but torch.cuda.is_available() is False in this env{hint}"
        raise InputError(msg)


def fingerprint(device: str) -> Fingerprint:
    """Read the running env."""
    import torch

    from harness import build_id

    try:
        import numpy

        numpy_version: str | None = numpy.__version__
    except Exception:  # numpy is optional for torch; record its absence
        numpy_version = None
    cuda_devices: list[str] = []
    if cuda_available():
        cuda_devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return Fingerprint(
        label=label_for(torch.__version__, python, device),
        torch=torch.__version__,
        torch_git=getattr(torch.version, "git_version", "") or "",
        cuda=getattr(torch.version, "cuda", None),
        cuda_devices=cuda_devices,
        python=platform.python_version(),
        numpy=numpy_version,
        platform=platform.platform(),
        machine=platform.machine(),
        device=device,
        harness=build_id(),
        threads=torch.get_num_threads(),
    )


def require_torch(found: str, expected: Optional[str]) -> None:
    """The torch that runs must be the torch the session asked for (asdf's guard).

    `expected` comes from ``--expect-torch`` or ``TORCH_ROUNDTRIP_EXPECT_TORCH``.
    """
    expected = expected or os.environ.get("TORCH_ROUNDTRIP_EXPECT_TORCH")
    if expected and _torch_release(found) != _torch_release(expected):
        msg = f"this env runs torch {found} but torch {expected} was asked for: refusing to record results under the wrong label"
        raise InputError(msg)


def check_expected_torch(expected: Optional[str]) -> None:
    """`require_torch` for the torch imported here."""
    import torch

    require_torch(torch.__version__, expected)
