"""The forward check: run the loaded model on the saved inputs.

Parameters can all come back exactly and the model still compute something
else (a lost non-persistent buffer, a different trace). The save phase
records the outputs on fixed inputs; a load in an env with the same kernels
(same torch build, machine, CPU kernels and device) must reproduce them bit for bit,
otherwise it is a mismatch. Across versions or devices kernels differ, so a
difference is reported as *drift* with its size, never as a pass.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, cast

from harness.runtime.compare import Difference, first_difference, hex_value
from harness.runtime.digest import contiguous_cpu, digest_tensor, raw_bytes
from harness.runtime.dtypes import to_dtype
from harness.runtime.manifest import Reference, Snapshot, TensorRecord, record_view
from harness.runtime.storage import tensor_from_bytes

if TYPE_CHECKING:
    import torch

__all__ = ["check_forward", "max_abs_diff", "module_device", "record_forward", "saved_inputs"]


def _outputs(value: Any) -> list[torch.Tensor]:
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        out = []
        for v in value:
            out.extend(_outputs(v))
        return out
    if isinstance(value, dict):
        out = []
        for k in sorted(value):
            out.extend(_outputs(value[k]))
        return out
    return []


def run_forward(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    import torch

    from harness.runtime.builder import torch_state

    with torch_state(threads=None), torch.no_grad():
        return [o.detach() for o in _outputs(module(*inputs))]


def record_forward(module: torch.nn.Module, inputs: Optional[tuple[torch.Tensor, ...]], compute_key: str, reference: Reference) -> dict[str, Any]:
    """Run the model at save time and record inputs and outputs (bytes kept in `reference`)."""
    if inputs is None:
        return {"status": "unavailable", "reason": "the user case gives no example inputs: return (module, inputs) from its factory to check the forward"}
    try:
        outputs = run_forward(module, inputs)
    except Exception as e:  # an env that cannot run its own model: nothing to compare later
        return {"status": "unavailable", "reason": f"the source env could not run the forward: {type(e).__name__}: {e}"[:500]}
    ins = Snapshot({f"input{i}": (t, "input") for i, t in enumerate(inputs)})
    outs = Snapshot({f"output{i}": (t, "output") for i, t in enumerate(outputs)})
    return {
        "status": "ok",
        "compute": compute_key,
        "inputs": [r.to_dict() for r in record_view(ins, reference).tensors.values()],
        "outputs": [r.to_dict() for r in record_view(outs, reference).tensors.values()],
    }


def _tensor_from(rec: TensorRecord, data: bytes, device: str) -> torch.Tensor:
    import torch

    dtype = to_dtype(rec.dtype)
    if not data:
        return torch.empty(rec.shape, dtype=dtype, device=device)
    return tensor_from_bytes(data, dtype, rec.shape).to(device)


def saved_inputs(forward: dict[str, Any], reference: Path, device: str) -> tuple[torch.Tensor, ...]:
    """The exact input tensors the source env used."""
    recs = [TensorRecord.from_dict(r) for r in forward["inputs"]]
    # Every record of the forward was written with its reference bytes (record_forward).
    return tuple(_tensor_from(r, Reference.read(reference, cast("list[int]", r.ref)), device) for r in recs)


def module_device(module: torch.nn.Module) -> str:
    """Where a module's tensors live (its first one that is not on the meta device)."""
    for getter in ("parameters", "buffers"):
        fn = getattr(module, getter, None)
        if fn is None:
            continue
        for t in fn():
            if t.device.type != "meta":
                return str(t.device)
    return "cpu"


def _max_abs_diff(expected: torch.Tensor, actual: torch.Tensor) -> float:
    import torch

    a = expected.to(torch.complex128 if expected.is_complex() else torch.float64)
    b = actual.detach().cpu().to(a.dtype)
    same_nan = torch.isnan(a) & torch.isnan(b)
    diff = (a - b).abs()
    diff = torch.where(same_nan, torch.zeros_like(diff), diff)
    diff = torch.where(torch.isnan(diff), torch.full_like(diff, math.inf), diff)
    return float(diff.max()) if diff.numel() else 0.0


def max_abs_diff(rec: TensorRecord, actual: torch.Tensor, reference: Path) -> float:
    """The largest absolute difference between a recorded tensor (bytes from `reference`) and `actual`.

    inf where the shapes or dtypes differ, or one side is NaN where the other is not.
    """
    if rec.ref is None or list(actual.shape) != rec.shape or str(actual.dtype).replace("torch.", "") != rec.dtype:
        return math.inf
    return _max_abs_diff(_tensor_from(rec, Reference.read(reference, rec.ref), "cpu"), actual)


def check_forward(module: torch.nn.Module, forward: Optional[dict[str, Any]], reference: Path, compute_key: str) -> tuple[dict[str, Any], Optional[Difference]]:
    """(forward record for the result line, Difference or None).

    The Difference is returned only where outputs had to be bit-identical.
    """
    if not forward:
        return {"status": "skip", "detail": "no forward recorded"}, None
    if forward.get("status") != "ok":
        return {"status": "skip", "detail": forward.get("reason", "no forward recorded")}, None
    same_kernels = forward.get("compute") == compute_key
    device = module_device(module)
    if device != "cpu":
        same_kernels = False
    try:
        outputs = run_forward(module, saved_inputs(forward, reference, device))
    except Exception as e:
        detail = f"forward raised {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
        if same_kernels:
            return {"status": "error", "detail": detail}, Difference("forward", "forward", "outputs as saved", detail)
        return {"status": "error", "detail": detail}, None
    recs = [TensorRecord.from_dict(r) for r in forward["outputs"]]
    if len(outputs) != len(recs):
        detail = f"{len(outputs)} outputs, {len(recs)} when saved"
        return {"status": "error", "detail": detail}, Difference("forward", "forward", len(recs), len(outputs))
    worst = 0.0
    differing = 0
    first: Optional[Difference] = None
    for i, (rec, out) in enumerate(zip(recs, outputs)):
        if str(out.dtype).replace("torch.", "") == rec.dtype and list(out.shape) == rec.shape and digest_tensor(out) == rec.digest:
            continue
        differing += 1
        assert rec.ref is not None  # record_forward keeps every output's bytes
        expected = _tensor_from(rec, Reference.read(reference, rec.ref), "cpu")
        if list(out.shape) != rec.shape or out.dtype != expected.dtype:
            worst = math.inf
            first = first or Difference(f"output{i}", "forward", f"{rec.dtype}{rec.shape}", f"{out.dtype}{list(out.shape)}")
            continue
        worst = max(worst, _max_abs_diff(expected, out))
        if first is None:
            c = contiguous_cpu(out)
            k = first_difference(Reference.read(reference, rec.ref), raw_bytes(c), c.element_size())
            if k is not None:
                chunk = slice(k * c.element_size(), (k + 1) * c.element_size())
                from harness.runtime.compare import unravel_index

                first = Difference(
                    f"output{i}", "forward",
                    hex_value(Reference.read(reference, rec.ref)[chunk], rec.dtype),
                    hex_value(bytes(raw_bytes(c)[chunk]), rec.dtype), index=unravel_index(k, rec.shape),
                )
    if not differing:
        return {"status": "exact", "same_kernels": same_kernels}, None
    record = {"status": "drift", "max_abs_diff": worst, "outputs_differing": differing, "same_kernels": same_kernels}
    return record, (first if same_kernels else None)
