"""Envs: where code runs, named by a label and described by a fingerprint.

The *label* (``torch-2.5.1-py3.11-cpu``) names an env in paths, results and
reports; a session of a matrix with a numpy axis also names its numpy
(``torch-2.4.1-py3.11-cpu-numpy-1.24.4``). The *fingerprint* records what
was really found at run time, so a session can refuse to run when the torch
(or numpy) it got is not the one it asked for.
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
    "EXPECT_NUMPY",
    "LOAD_DEVICES",
    "GOLDEN_PREFIX",
    "Fingerprint",
    "check_device",
    "cpu_kernels",
    "check_expected_torch",
    "require_torch",
    "cuda_available",
    "fingerprint",
    "env_sort_key",
    "label_for",
    "labelled_numpy",
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
_LABEL = re.compile(
    r"^(?:golden-)?torch-(?P<torch>[0-9][0-9A-Za-z.]*)-py(?P<python>\d+\.\d+)-(?P<device>cpu|cuda|cuda-emulated)"
    r"(?:-numpy-(?P<numpy>[0-9][0-9A-Za-z.]*))?$"
)
#: The numpy a session was asked for (nox sets it for a matrix with a numpy
#: axis): the session refuses another numpy, and its label names this one.
EXPECT_NUMPY = "TORCH_ROUNDTRIP_EXPECT_NUMPY"


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
    #: the vector ISA torch dispatches CPU kernels to, and the CPU's own
    #: (`cpu_kernels`): two x86_64 hosts with and without AVX-512 compute
    #: different last bits with the same torch
    cpu: str = ""

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
        return f"{self.torch}|{self.torch_git}|{self.machine}|{self.cpu}|{dev}|threads={self.threads}"


def _torch_release(version: str) -> str:
    # "2.4.1+cu121" -> "2.4.1": the local part names the build, not the release.
    return version.split("+", 1)[0]


def label_for(torch_version: str, python: str, device: str, numpy: Optional[str] = None) -> str:
    """The env label, e.g. ``torch-2.5.1-py3.11-cuda-emulated``.

    `numpy` is given only where the matrix has a numpy axis
    (``torch-2.4.1-py3.11-cpu-numpy-1.24.4``): labels without the axis stay
    as they were, since paths, cell keys and session names use them.
    """
    label = f"torch-{_torch_release(torch_version)}-py{python}-{device}"
    return f"{label}-numpy-{numpy}" if numpy else label


def parse_label(label: str) -> dict[str, str]:
    """Split a label into torch, python, device and numpy ("" without a numpy axis); InputError if it is not one."""
    m = _LABEL.match(label)
    if not m:
        msg = f"label={label!r} is not an env label like 'torch-2.5.1-py3.11-cpu' or 'torch-2.4.1-py3.11-cpu-numpy-1.24.4'"
        raise InputError(msg)
    return {key: value or "" for key, value in m.groupdict().items()}


def env_sort_key(label: str) -> tuple[Any, ...]:
    """Order envs by torch release, then Python, then device, then numpy (a numpy axis); odd labels last, by name."""
    from harness.runtime.versions import release

    try:
        parts = parse_label(label)
        numpy = release(parts["numpy"]) if parts["numpy"] else ()
        return (0, release(parts["torch"]), release(parts["python"]), parts["device"], numpy, label)
    except (InputError, ValueError):
        return (1, (), (), "", (), label)


def labelled_numpy(found: Optional[str], expected: Optional[str] = None) -> Optional[str]:
    """The numpy this session's label names: None without a numpy axis, else `found`, which must be the one asked for.

    `expected` comes from the numpy axis (``TORCH_ROUNDTRIP_EXPECT_NUMPY``,
    set by nox). `found` is the numpy this env really has (None: none), so
    an env whose numpy is not the one asked for is refused, never labelled
    with a numpy it does not run (asdf's guard, as `require_torch`).
    """
    expected = expected or os.environ.get(EXPECT_NUMPY)
    if not expected:
        return None
    if found is None or found != expected:
        msg = (f"this env runs numpy {found or '(none)'} but numpy {expected} was asked for: "
               f"refusing to record results under the wrong label (install numpy=={expected} in this env)")
        raise InputError(msg)
    return found


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
        label=label_for(torch.__version__, python, device, labelled_numpy(numpy_version)),
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
        cpu=cpu_kernels(),
    )


_ISA_FLAGS = re.compile(r"^(avx\w*|amx\w*|fma\w*|sse4_2|f16c|neon|asimd\w*|sve\w*)$")


def cpu_kernels() -> str:
    """Which CPU kernels this torch runs here: its dispatch level and the CPU's vector ISA.

    torch picks its kernels (``DEFAULT``, ``AVX2``, ``AVX512``) by what the
    CPU offers, and its BLAS and oneDNN pick theirs by the same flags, so the
    same torch build computes other last bits on another CPU. Asked of torch
    where it can say (``torch.backends.cpu.get_cpu_capability``, torch 2.0;
    ``torch.__config__.show()`` before), plus a digest of the CPU's vector
    flags where the OS lists them.
    """
    import hashlib

    import torch

    level = ""
    getter = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    if getter is not None:
        try:
            level = str(getter())
        except Exception:  # a build that cannot tell: the flags still tell hosts apart
            level = ""
    if not level:
        try:
            m = re.search(r"CPU capability usage: (\w+)", torch.__config__.show())
            level = m.group(1) if m else ""
        except Exception:  # noqa: BLE001 - very old torch: no config report
            level = ""
    flags: list[str] = []
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags = sorted(w for w in line.split(":", 1)[1].split() if _ISA_FLAGS.match(w))
                    break
    except OSError:  # no /proc (macOS, Windows): the dispatch level alone
        pass
    isa = hashlib.sha256(" ".join(flags).encode()).hexdigest()[:8] if flags else "?"
    return f"{level or '?'}/{isa}"


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
