"""What training checkpoints carry besides tensors: built from a spec, described as plain data.

People save more than state dicts: the epoch, a numpy float64 loss, a numpy
array of metrics, the ``argparse.Namespace`` of hyper-parameters, a
dataclass config, an ``Enum``, a ``pathlib.Path``, the loss module, and
tuples, sets, bytes and nested containers. Each one is a ``weights_only``
refusal, a numpy-version or a Python-version hazard that state-dict-only
cases never meet.

`build_extras` makes them from a spec's ``checkpoint_extras`` list, with the
same values in every env. `describe` turns one of them into plain values (or
a tensor) that `compare` checks exactly. It describes by content, never by
``repr``: numpy 2 prints ``np.float64(0.25)`` where numpy 1 prints ``0.25``,
and the two must compare equal when the bits are equal.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import inspect
import pathlib
from typing import Any, Optional

from harness.runtime.errors import Unsupported

__all__ = ["EXTRA_KINDS", "Phase", "TrainConfig", "build_extras", "describe"]

#: What a spec's ``checkpoint_extras`` may list, each with the keys it adds.
EXTRA_KINDS = {
    "numpy_scalar": ("best_loss", "epoch_np"),
    "numpy_array": ("val_history",),
    "namespace": ("args",),
    "dataclass": ("config",),
    "enum": ("phase",),
    "path": ("data_dir",),
    "loss_module": ("criterion",),
    "tuple": ("best",),
    "set": ("seen_classes",),
    "bytes": ("git_sha",),
    "nested": ("history",),
}


@dataclasses.dataclass
class TrainConfig:
    """A run's configuration as a dataclass, the way people keep one beside the weights."""

    lr: float
    batch_size: int
    betas: tuple[float, float]
    schedule: str


class Phase(enum.Enum):
    """The phase a run was in when it saved."""

    WARMUP = "warmup"
    TRAIN = "train"
    FINETUNE = "finetune"


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        raise Unsupported("numpy is not installed in this env, so the checkpoint's numpy objects cannot be built") from None
    return numpy


def _loss_settings(cls: type) -> dict[str, Any]:
    # label_smoothing appeared in torch 1.10: older releases build the loss without it.
    wanted = {"ignore_index": -1, "label_smoothing": 0.125}
    params = inspect.signature(cls).parameters
    return {k: v for k, v in wanted.items() if k in params}


def build_extras(kinds: list[str], seed: int) -> dict[str, Any]:
    """The objects the `kinds` stand for, keyed as a training script would key them.

    Values depend only on `seed`, and floats are exact binary fractions, so
    every env builds the same bits.
    """
    import torch

    out: dict[str, Any] = {}
    k = seed % 7
    for kind in kinds:
        if kind == "numpy_scalar":
            np = _numpy()
            out["best_loss"] = np.float64(0.25 + k / 64)
            out["epoch_np"] = np.int64(3 + k)
        elif kind == "numpy_array":
            np = _numpy()
            out["val_history"] = np.arange(6, dtype=np.float32).reshape(2, 3) / np.float32(8) + np.float32(k)
        elif kind == "namespace":
            out["args"] = argparse.Namespace(lr=0.001 * (k + 1), epochs=10 + k, arch="tiny", betas=(0.9, 0.999), resume=None)
        elif kind == "dataclass":
            out["config"] = TrainConfig(lr=0.5 ** (k + 3), batch_size=32, betas=(0.9, 0.999), schedule="cosine")
        elif kind == "enum":
            out["phase"] = list(Phase)[k % len(Phase)]
        elif kind == "path":
            out["data_dir"] = pathlib.Path("/data/runs") / f"run-{k}" / "train"
        elif kind == "loss_module":
            out["criterion"] = torch.nn.CrossEntropyLoss(**_loss_settings(torch.nn.CrossEntropyLoss))
        elif kind == "tuple":
            out["best"] = (7 + k, 0.875)
        elif kind == "set":
            out["seen_classes"] = {0, 3, 5 + k}
        elif kind == "bytes":
            out["git_sha"] = bytes(range(k, k + 20))
        elif kind == "nested":
            out["history"] = {"train": [1.0, 0.5, 0.25], "val": {"top1": (0.375, 0.5), "ok": True}, "note": None}
        else:
            msg = f"checkpoint extra {kind!r} is not one of {', '.join(EXTRA_KINDS)}"
            raise ValueError(msg)
    return out


def _float_hex(value: float) -> str:
    return float(value).hex()


def describe(obj: Any) -> Optional[tuple[str, Any]]:
    """How `flatten` records a checkpoint extra, or None for anything else.

    ``("tensor", t)``: a numpy array as a tensor of the same bytes, dtype and
    shape; ``("items", (type_name, dict))``: an object made of named fields
    (a Namespace, a dataclass, a loss module's settings), walked further;
    ``("value", text)``: a leaf, spelled by content.
    """
    import torch

    cls = type(obj)
    module = cls.__module__ or ""
    if module.split(".")[0] == "numpy":
        np = _numpy()
        if isinstance(obj, np.ndarray):
            return "tensor", torch.from_numpy(np.ascontiguousarray(obj).copy())
        if isinstance(obj, np.generic):
            return "value", f"numpy.{cls.__name__}:{obj.tobytes().hex()}"
        return None
    if isinstance(obj, argparse.Namespace):
        return "items", ("argparse.Namespace", dict(vars(obj)))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return "items", (f"{module}.{cls.__qualname__}", {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
    if isinstance(obj, enum.Enum):
        return "value", f"enum:{module}.{cls.__qualname__}.{obj.name}"
    if isinstance(obj, pathlib.PurePath):
        # The class differs by OS and Python (PosixPath, pathlib._local.PosixPath
        # in 3.13): the kind of path and its text are what a load must keep.
        return "value", f"path:{'posix' if isinstance(obj, pathlib.PurePosixPath) else 'windows'}:{obj.as_posix()}"
    if isinstance(obj, (set, frozenset)):
        items = sorted(_float_hex(v) if isinstance(v, float) else repr(v) for v in obj)
        return "value", f"{cls.__name__}:{{{', '.join(items)}}}"
    if isinstance(obj, (bytes, bytearray)):
        return "value", f"{cls.__name__}:{bytes(obj).hex()}"
    if isinstance(obj, torch.nn.Module):
        settings = {k: v for k, v in vars(obj).items() if not k.startswith("_") and k != "training"}
        state = {f"${k}": v for k, v in obj.state_dict().items()}
        return "items", (f"{module}.{cls.__qualname__}", {**settings, **state})
    return None
