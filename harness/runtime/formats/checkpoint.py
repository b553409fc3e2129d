"""`checkpoint`: everything a training run needs to resume.

``{"model": state_dict, "optimizer": ..., "scheduler": ..., "rng": {...},
"step": n}`` in one ``torch.save``, plus what the spec's
``checkpoint_extras`` add beside them as training scripts do (numpy
scalars and arrays, a Namespace, a dataclass config, ...: see
`harness.runtime.checkpoint_extras`). Loading it raw compares the file;
``safe_globals=needed`` loads it with ``weights_only=True`` once every
global it needs is allowlisted (`harness.runtime.allowlist`), which proves
the fix a ``weights_only`` refusal's diagnosis offers. ``apply=resume``
rebuilds model, optimizer and scheduler here, loads each state into them,
restores the RNG, and compares the resumed state with the state the source
env had when it saved. ``apply=step`` then takes one optimizer step on the
load device, which must equal the step the source env took from the same
state: bit for bit with the same kernels, drift with its size otherwise.
That catches optimizer state restored to the wrong device or dtype, which
a comparison of the state alone can miss.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from harness.runtime.allowlist import fix_text, load_allowing
from harness.runtime.checkpoint_extras import build_extras
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
    """The training state a resume restores: what `stepped_snapshot` holds, plus the RNG states and the step."""
    snap = stepped_snapshot(model, optimizer, scheduler)
    flatten(rng, "rng.", snap)
    snap.values["step"] = step
    return snap


def stepped_snapshot(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler) -> Snapshot:
    """Model, optimizer and scheduler after the step a resumed run takes first."""
    snap = Snapshot()
    snap.merge(module_snapshot(model), "model.")
    flatten(canonical_optimizer_state(optimizer.state_dict()), "optimizer.", snap)
    flatten(scheduler.state_dict(), "scheduler.", snap)
    return snap


def _restore_rng(rng: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(rng["torch"].cpu())
    random.setstate(rng["python"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


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
        ckpt.update(build_extras(built.spec.data.get("checkpoint_extras", []), built.spec.seed))
        torch.save(ckpt, str(directory / self.filename))
        views = {
            "file": file_snapshot(ckpt, built.model, prefix, under="model."),
            "resume": resume_snapshot(built.model, built.optimizer, built.scheduler, rng, built.step),
        }
        saved_with = {}
        if built.inputs is None:
            saved_with["no_step"] = "the case gives no example inputs, so no training step was recorded"
        else:
            try:
                views["stepped"] = self._step_from(built, ckpt)
            except Unsupported as e:
                saved_with["no_step"] = str(e)
        return Saved(files=[self.filename], views=views, saved_with=saved_with)

    def _step_from(self, built: Built, ckpt: dict[str, Any]) -> Snapshot:
        """The step a resumed run takes, taken here on copies: the saved model and optimizer stay as saved."""
        import torch

        from harness.runtime.builder import make_training, torch_state, train_step

        assert built.inputs is not None
        # Legacy weight_norm keeps its computed weight as a plain attribute, and
        # a forward with grad (a trace) leaves it a non-leaf tensor, which
        # deepcopy refuses: copy it detached (the next forward recomputes it).
        memo: dict[int, Any] = {
            id(t): t.detach() for m in built.model.modules() for t in vars(m).values()
            if isinstance(t, torch.Tensor) and not t.is_leaf
        }
        model = copy.deepcopy(built.model, memo)
        optimizer, scheduler = make_training(model, built.spec)
        # load_state_dict may keep the very tensors it is given: hand it copies.
        optimizer.load_state_dict(copy.deepcopy(ckpt["optimizer"]))
        scheduler.load_state_dict(copy.deepcopy(ckpt["scheduler"]))
        # One thread on both sides: a step's reductions (conv and BatchNorm
        # backward) are summed in another order with another thread count.
        with torch_state():
            _restore_rng(ckpt["rng"])
            try:
                train_step(model, optimizer, scheduler, built.inputs, built.spec)
            except (RuntimeError, NotImplementedError) as e:
                # e.g. an output that no trainable parameter reaches: a run has no step to take
                msg = f"the source env could not take a training step on this model: {type(e).__name__}: {e}"[:400]
                raise Unsupported(msg) from e
        return stepped_snapshot(model, optimizer, scheduler)

    def variants(self, cuda: bool) -> list[LoadOptions]:
        # The weights_only fix, applied: raw, and resumed then stepped.
        fixed = [
            LoadOptions(map_location="cpu", weights_only="true", mmap=False, apply=a, safe_globals="needed")
            for a in ("none", "step")
        ]
        return torch_load_sweep(cuda) + apply_sweep(("resume", "step"), cuda) + fixed

    def torch_load_path(self, directory: Path) -> Optional[Path]:
        return directory / self.filename

    def load(self, directory: Path, options: LoadOptions, ctx: LoadContext) -> Loaded:
        import torch

        path, kwargs = str(directory / self.filename), torch_load_kwargs(options)
        notes = []
        if options.safe_globals == "needed":
            ckpt, needed = load_allowing(lambda: torch.load(path, **kwargs))
            if needed:
                notes.append(f"weights_only=True loads it once its {len(needed)} globals are allowlisted: {fix_text(needed)}")
        else:
            ckpt = torch.load(path, **kwargs)
        if options.apply not in ("resume", "step"):
            snap = flatten(ckpt)
            snap.notes.extend(notes)
            return Loaded("file", snap)
        model = ctx.fresh()
        model.load_state_dict(ckpt["model"], strict=True)
        optimizer, scheduler = ctx.training(model)
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        _restore_rng(ckpt["rng"])
        if options.apply == "step":
            from harness.runtime.builder import torch_state, train_step

            inputs = ctx.saved_inputs()
            with torch_state():  # one thread, as the source env's step
                train_step(model, optimizer, scheduler, inputs, ctx.spec)
            snap = stepped_snapshot(model, optimizer, scheduler)
            snap.notes.extend(notes)
            # The forward check would run the stepped model against outputs
            # recorded before the step: the stepped state is what is compared.
            return Loaded("stepped", snap, forward_skip="the model took a training step after loading")
        rng = _rng_state()
        if "cuda" in ckpt["rng"] and "cuda" not in rng:
            rng["cuda"] = ckpt["rng"]["cuda"]  # nothing to restore it into on a CPU-only host
        snap = resume_snapshot(model, optimizer, scheduler, rng, ckpt["step"])
        snap.notes.extend(notes)
        return Loaded("resume", snap, module=model)
