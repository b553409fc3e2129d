"""`checkpoint`: everything a training run needs to resume.

``{"model": state_dict, "optimizer": ..., "scheduler": ..., "rng": {...},
"step": n}`` in one ``torch.save``. Loading it raw compares the file;
``apply=resume`` rebuilds model, optimizer and scheduler here, loads each
state into them, restores the RNG, and compares the resumed state with the
state the source env had when it saved.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from harness.runtime.errors import Unsupported
from harness.runtime.formats.base import (
    Format,
    LoadContext,
    Loaded,
    Saved,
    file_snapshot,
    prefixed_state_dict,
)
from harness.runtime.load_options import (
    LoadOptions,
    apply_sweep,
    torch_load_kwargs,
    torch_load_sweep,
)
from harness.runtime.manifest import Snapshot, flatten, module_snapshot

if TYPE_CHECKING:
    import torch

    from harness.runtime.builder import Built

__all__ = ["Checkpoint", "canonical_optimizer_state"]


def _rng_state() -> dict[str, Any]:
    import torch

    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def canonical_optimizer_state(state_dict: dict[str, Any]) -> dict[str, Any]:
    """An optimizer state dict in the one shape every release can be compared in.

    Two things differ between releases by design, not by damage:
    torch < 1.5 keys ``state`` and ``param_groups[*].params`` by
    ``id(param)``, which differs in every process (``load_state_dict`` pairs
    them by position anyway), so they are numbered by position as newer
    releases do; and torch 1.12 made Adam's ``step`` a tensor, which
    ``load_state_dict`` converts an older file's int into, so ``step`` is
    compared as a number. Every other state tensor is compared as saved:
    its dtype and device are what resuming must get right.
    """
    import torch

    order = [p for group in state_dict.get("param_groups", []) for p in group.get("params", [])]
    number = {p: i for i, p in enumerate(order)}
    groups = [dict(g, params=[number[p] for p in g.get("params", [])]) for g in state_dict.get("param_groups", [])]
    state = {}
    for key, value in state_dict.get("state", {}).items():
        if isinstance(value, dict) and "step" in value:
            step = value["step"]
            value = dict(value, step=float(step.item() if isinstance(step, torch.Tensor) else step))
        state[number.get(key, key)] = value
    return dict(state_dict, state=state, param_groups=groups)


def resume_snapshot(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
    rng: dict[str, Any], step: int,
) -> Snapshot:
    snap = Snapshot()
    snap.merge(module_snapshot(model), "model.")
    flatten(canonical_optimizer_state(optimizer.state_dict()), "optimizer.", snap)
    flatten(scheduler.state_dict(), "scheduler.", snap)
    flatten(rng, "rng.", snap)
    snap.values["step"] = step
    return snap


class Checkpoint(Format):
    name = "checkpoint"
    summary = "model + optimizer + LR scheduler + RNG states + step in one torch.save"
    filename = "checkpoint.pt"

    def save(self, built: Built, directory: Path, prefix: Optional[str]) -> Saved:
        import torch

        from harness.runtime.builder import torch_state

        if built.optimizer is None:
            msg = "the model has no parameter that requires grad, so there is no optimizer state to checkpoint"
            raise Unsupported(msg)
        assert built.scheduler is not None  # make_training sets both
        with torch_state():
            # A fixed RNG state makes the artifact the same on every save.
            torch.manual_seed(built.spec.seed + 17)
            random.seed(built.spec.seed + 17)
            rng = _rng_state()
        ckpt = {
            "model": prefixed_state_dict(built.model, prefix),
            "optimizer": built.optimizer.state_dict(),
            "scheduler": built.scheduler.state_dict(),
            "rng": rng,
            "step": built.step,
        }
        torch.save(ckpt, str(directory / self.filename))
        return Saved(
            files=[self.filename],
            views={
                "file": file_snapshot(ckpt, built.model, prefix, under="model."),
                "resume": resume_snapshot(built.model, built.optimizer, built.scheduler, rng, built.step),
            },
        )

    def variants(self, cuda: bool) -> list[LoadOptions]:
        return torch_load_sweep(cuda) + apply_sweep(("resume",), cuda)

    def load(self, directory: Path, options: LoadOptions, ctx: LoadContext) -> Loaded:
        import torch

        ckpt = torch.load(str(directory / self.filename), **torch_load_kwargs(options))
        if options.apply != "resume":
            return Loaded("file", flatten(ckpt))
        model = ctx.fresh()
        model.load_state_dict(ckpt["model"], strict=True)
        optimizer, scheduler = ctx.training(model)
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng"]["torch"].cpu())
        random.setstate(ckpt["rng"]["python"])
        if "cuda" in ckpt["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
        rng = _rng_state()
        if "cuda" in ckpt["rng"] and "cuda" not in rng:
            rng["cuda"] = ckpt["rng"]["cuda"]  # nothing to restore it into on a CPU-only host
        snap = resume_snapshot(model, optimizer, scheduler, rng, ckpt["step"])
        return Loaded("resume", snap, module=model)
