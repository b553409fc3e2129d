"""Turn a spec into a model, deterministically, in whatever torch is here.

Three modes:

``init``
    Seeded construction, extra tensors, ties, planted special values, layout
    changes, parametrizations and training: the model a save phase saves.
``empty``
    The same architecture, constructed without running weight init, with
    every parameter and persistent buffer filled with a poison byte (0xA5);
    non-persistent buffers keep their formula values. This is the "freshly
    built model" a state dict is loaded into. Poison
    makes a tensor that a load forgot to fill show up as a mismatch instead
    of passing by luck (a zero bias that was never loaded looks right).
``meta``
    The architecture on the meta device, for ``load_state_dict(assign=True)``.

A layer, parametrization or dtype that this torch lacks raises
`Unsupported`, which becomes a skip with its reason.
"""

from __future__ import annotations

import contextlib
import ctypes
import inspect
import random
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
import torch.nn as nn

from harness.runtime.casemodel import CaseModel, moved_class
from harness.runtime.dtypes import (
    BIT_BUILT_DTYPES,
    FLOAT_DTYPES,
    edge_bits,
    int_view_dtype,
    one_bits,
    special_bits,
    to_dtype,
)
from harness.runtime.errors import FactoryUnavailable, InputError, SpecError, Unsupported
from harness.runtime.layers import KINDS, input_shape
from harness.runtime.spec import CONTAINERS, Spec, child_items, input_signatures
from harness.runtime.storage import reinterpret, storage_span, untyped_storage

__all__ = [
    "POISON_BYTE",
    "Built",
    "build",
    "from_factory",
    "make_training",
    "poison",
    "torch_state",
    "train_step",
]

POISON_BYTE = 0xA5


@dataclass
class Built:
    """A built case: the model, its forward inputs and its training state."""

    spec: Spec
    model: nn.Module  # a CaseModel, or what a user case's factory returned
    inputs: Optional[tuple[torch.Tensor, ...]]  # None: a user case without example inputs
    optimizer: Optional[torch.optim.Optimizer] = None
    scheduler: Optional[torch.optim.lr_scheduler.LRScheduler] = None
    step: int = 0
    losses: list[float] = field(default_factory=list)


@contextlib.contextmanager
def torch_state(threads: Optional[int] = 1) -> Iterator[None]:
    """A fixed thread count and a restored RNG afterwards: reproducible builds.

    `threads=None` keeps the process's thread count (the forward check uses
    it: the fingerprint's compute key records it, so only envs with the same
    count expect bit-identical outputs).
    """
    old_threads = torch.get_num_threads()
    rng = torch.get_rng_state()
    py_rng = random.getstate()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if threads is not None:
            torch.set_num_threads(old_threads)
        torch.set_rng_state(rng)
        random.setstate(py_rng)


def _plan(node: dict[str, Any], path: str = "") -> tuple:
    kind = node["kind"]
    if kind in CONTAINERS:
        children = tuple(_plan(c, f"{path}.{n}" if path else n) for n, c in child_items(node))
        return ("chain" if kind == "sequential" else "parallel", children)
    return ("leaf", path, KINDS[kind].call)


def _construct(node: dict[str, Any], where: str) -> nn.Module:
    kind = node["kind"]
    if kind in CONTAINERS:
        built = [(n, _construct(c, f"{where}.children[{i}]")) for i, (n, c) in enumerate(child_items(node))]
        if kind == "module_list":
            return nn.ModuleList([m for _, m in built])
        if kind == "module_dict":
            # An OrderedDict: torch < 1.5 sorted the keys of a plain dict.
            return nn.ModuleDict(OrderedDict(built))
        return nn.Sequential(OrderedDict(built))
    layer = KINDS[kind]
    fields = {f.name: node.get(f.name, f.default) for f in layer.fields}
    dtype = to_dtype(node.get("dtype", "float32")) if layer.has_params else None
    try:
        return layer.build(fields, dtype)
    except (TypeError, AttributeError, RuntimeError, NotImplementedError, ZeroDivisionError, ValueError) as e:
        # ZeroDivisionError: torch < 1.5's fan-in init on a zero-size layer
        msg = f"{where}: this torch cannot build {kind} with dtype {node.get('dtype', 'float32')}: {type(e).__name__}: {e}"
        raise Unsupported(msg) from e


def _formula(n: int, dtype_name: str, seed: int) -> torch.Tensor:
    """Deterministic values from integer arithmetic: equal in every torch."""
    if dtype_name in BIT_BUILT_DTYPES:
        return _from_bits([n], dtype_name, "formula", seed)
    i = torch.arange(n, dtype=torch.int64, device="cpu")
    k = (i * 7919 + seed * 104729) % 2003 - 1001
    if dtype_name == "bool":
        return (k % 3) == 0
    if dtype_name.startswith("int") or dtype_name == "uint8":
        return (k % 127).to(to_dtype(dtype_name)) if dtype_name in ("int8", "uint8") else k.to(to_dtype(dtype_name))
    real = k.to(torch.float64) / 64
    if dtype_name in ("complex64", "complex128"):
        if not hasattr(torch, "complex"):
            raise Unsupported("this torch has no complex tensors (torch.complex)")
        part = torch.float32 if dtype_name == "complex64" else torch.float64
        imag = ((i * 104729 + seed) % 997 - 498).to(torch.float64) / 32
        return torch.complex(real.to(part), imag.to(part))
    return real.to(to_dtype(dtype_name))


# Multipliers that spread the formula's k (|k| <= 1001) over a uint's whole
# range, sign bit included, without overflowing the signed integer of its width.
_UINT_SPREAD = {"uint16": 31, "uint32": 2_000_003, "uint64": 9_007_199_254_740_881}


def _from_bits(shape: list[int], dtype_name: str, fill: str, seed: int) -> torch.Tensor:
    """A float8, uint16/32/64 or complex32 tensor written as bit patterns.

    Releases that have these dtypes can do little with them (torch 2.1 to 2.4
    have no ``fill_`` for float8, so not even ``torch.ones``) and a conversion
    could round differently from one release to the next. So the bits are computed
    in int64, narrowed exactly to the integer of the same width (complex32:
    float16 components, whose values are exact) and their bytes copied into
    the dtype. The ``formula`` fill starts with the dtype's edge patterns
    (`edge_bits`: NaN, inf, -0, subnormals; 0, the maximum, the top bit), so
    even a tiny tensor holds them.
    """
    dtype = to_dtype(dtype_name)  # Unsupported where this torch lacks it
    n = 1
    for d in shape:
        n *= d
    i = torch.arange(n, dtype=torch.int64, device="cpu")
    k = (i * 7919 + seed * 104729) % 2003 - 1001
    if dtype_name == "complex32":
        if fill == "formula":
            real = k.to(torch.float64) / 64
            imag = ((i * 104729 + seed) % 997 - 498).to(torch.float64) / 32
        else:
            real = torch.full([n], 1.0 if fill == "ones" else 0.0, dtype=torch.float64, device="cpu")
            imag = torch.zeros([n], dtype=torch.float64, device="cpu")
        parts = torch.stack([real, imag], 1).reshape(-1).to(torch.float16)
        return _retyped(parts, dtype, shape)
    if fill == "zeros":
        bits = torch.zeros([n], dtype=torch.int64, device="cpu")
    elif fill == "ones":
        bits = torch.full([n], one_bits(dtype_name), dtype=torch.int64, device="cpu")
    else:
        if dtype_name in _UINT_SPREAD:
            bits = k * _UINT_SPREAD[dtype_name]
        else:  # float8: one byte each, as a signed int8
            bits = (k + 1024) % 256
            bits = bits - 256 * (bits >= 128).to(torch.int64)
        edges = edge_bits(dtype_name)[:n]
        if edges:
            bits[:len(edges)] = torch.tensor(edges, dtype=torch.int64, device="cpu")
    return _retyped(bits.to(to_dtype(int_view_dtype(dtype_name))), dtype, shape)


def _retyped(bits: torch.Tensor, dtype: torch.dtype, shape: list[int]) -> torch.Tensor:
    try:
        return reinterpret(bits, dtype, shape)
    except RuntimeError as e:  # torch 1.4 names complex32 but has no kernel to allocate it
        msg = f"this torch cannot make {str(dtype).replace('torch.', '')} tensors: {type(e).__name__}: {e}"
        raise Unsupported(msg) from e


def _fill(shape: list[int], dtype_name: str, fill: str, seed: int) -> torch.Tensor:
    n = 1
    for d in shape:
        n *= d
    if dtype_name in BIT_BUILT_DTYPES:
        return _from_bits(shape, dtype_name, fill, seed)
    if fill == "zeros":
        return torch.zeros(shape, dtype=to_dtype(dtype_name), device="cpu")
    if fill == "ones":
        return torch.ones(shape, dtype=to_dtype(dtype_name), device="cpu")
    return _formula(n, dtype_name, seed).reshape(shape)


def _sparse(shape: list[int], dtype_name: str, seed: int) -> torch.Tensor:
    rows, cols = shape
    total = rows * cols
    nnz = min(total, 5)
    flat = torch.tensor([j * total // nnz for j in range(nnz)], dtype=torch.int64, device="cpu")
    indices = torch.stack([flat // max(cols, 1), flat % max(cols, 1)])
    values = _formula(nnz, dtype_name, seed)
    # An explicit device keeps a meta-device build from making a meta sparse
    # tensor, which cannot be coalesced.
    try:
        try:
            t = torch.sparse_coo_tensor(indices, values, (rows, cols), device="cpu", check_invariants=True)
        except TypeError:  # a torch without check_invariants
            t = torch.sparse_coo_tensor(indices, values, (rows, cols), device="cpu")
        return t.coalesce()
    except (RuntimeError, NotImplementedError) as e:  # e.g. no coalesce kernel for float8 or uint16
        msg = f"this torch cannot build a sparse COO {dtype_name} tensor: {type(e).__name__}: {e}"
        raise Unsupported(msg) from e


def _extra_tensor(spec_t: dict[str, Any], seed: int, index: int) -> torch.Tensor:
    """An extra tensor's value, always made on the CPU (even inside a meta context)."""
    dtype_name = spec_t.get("dtype", "float32")
    if spec_t.get("layout", "strided") == "sparse_coo":
        return _sparse(spec_t["shape"], dtype_name, seed + index)
    return _fill(spec_t["shape"], dtype_name, spec_t.get("fill", "formula"), seed + index)


def _submodule(model: nn.Module, path: str) -> nn.Module:
    """``model.get_submodule(path)``, which torch < 1.9 lacks: AttributeError when there is none."""
    module = model
    for part in path.split(".") if path else ():
        child = module._modules.get(part)
        if child is None:
            raise AttributeError(f"{type(module).__name__} has no submodule {part!r}")
        module = child
    return module


def _resolve(model: nn.Module, path: str, where: str) -> tuple[nn.Module, str]:
    owner_path, _, attr = path.rpartition(".")
    try:
        owner = _submodule(model, owner_path)
    except AttributeError:
        raise SpecError(where, f"no module at {owner_path!r}") from None
    if attr not in owner._parameters and attr not in owner._buffers:
        raise SpecError(where, f"{path!r} is not a parameter or buffer of {type(owner).__name__}")
    return owner, attr


def _add_extras(model: nn.Module, spec: Spec, *, on_meta: bool) -> None:
    for i, t in enumerate(spec.data.get("tensors", [])):
        owner = _submodule(model, t.get("at") or "")
        if hasattr(owner, t["name"]):
            raise SpecError(f"tensors[{i}].name", f"{t['name']!r} already exists on {type(owner).__name__}")
        value = _extra_tensor(t, spec.seed, i)
        if on_meta and not value.is_sparse:
            value = value.to("meta")
        if t.get("kind", "buffer") == "parameter":
            owner.register_parameter(t["name"], nn.Parameter(value, requires_grad=t.get("requires_grad", value.is_floating_point() or value.is_complex())))
        elif t.get("persistent", True):
            owner.register_buffer(t["name"], value)
        elif "persistent" in inspect.signature(owner.register_buffer).parameters:
            owner.register_buffer(t["name"], value, persistent=False)
        else:
            raise Unsupported(f"tensors[{i}]: this torch has no non-persistent buffers (register_buffer has no persistent=)")


def _tie(model: nn.Module, spec: Spec) -> None:
    for i, tie in enumerate(spec.data.get("ties", [])):
        src_owner, src_attr = _resolve(model, tie["from"], f"ties[{i}].from")
        dst_owner, dst_attr = _resolve(model, tie["to"], f"ties[{i}].to")
        src = src_owner._parameters.get(src_attr)
        dst = dst_owner._parameters.get(dst_attr)
        if src is None or dst is None:
            raise SpecError(f"ties[{i}]", "both ends of a tie must be parameters")
        if src.shape != dst.shape or src.dtype != dst.dtype:
            raise SpecError(f"ties[{i}]", f"cannot tie {tie['from']} {tuple(src.shape)} {src.dtype} to {tie['to']} {tuple(dst.shape)} {dst.dtype}")
        setattr(dst_owner, dst_attr, src)


def _plant(model: nn.Module, spec: Spec) -> None:
    for i, p in enumerate(spec.data.get("plant", [])):
        owner, attr = _resolve(model, p["at"], f"plant[{i}].at")
        tensor = getattr(owner, attr)
        name = str(tensor.dtype).replace("torch.", "")
        if name not in FLOAT_DTYPES:
            raise SpecError(f"plant[{i}].at", f"special values need a floating point tensor, {p['at']} is {name}")
        bits = special_bits(name)
        with torch.no_grad():
            target = tensor.data
            if target.is_complex():
                target = torch.view_as_real(target)
            flat = target.reshape(-1)
            if flat.data_ptr() != target.data_ptr() or not target.is_contiguous():
                raise SpecError(f"plant[{i}].at", "planting needs a contiguous tensor (plant before layout changes)")
            k = min(flat.numel(), len(bits))
            if k:
                flat.view(to_dtype(int_view_dtype(name)))[:k] = torch.tensor(bits[:k], dtype=to_dtype(int_view_dtype(name)))


def _relayout(model: nn.Module, spec: Spec, *, on_meta: bool) -> None:
    for i, lay in enumerate(spec.data.get("layout", [])):
        owner, attr = _resolve(model, lay["at"], f"layout[{i}].at")
        old = getattr(owner, attr)
        kind = lay["kind"]
        with torch.no_grad():
            if kind == "channels_last":
                if old.dim() == 4:
                    new = old.detach().contiguous(memory_format=torch.channels_last)
                elif old.dim() == 5:
                    if not hasattr(torch, "channels_last_3d"):
                        raise Unsupported(f"layout[{i}]: this torch has no torch.channels_last_3d")
                    new = old.detach().contiguous(memory_format=torch.channels_last_3d)
                else:
                    raise SpecError(f"layout[{i}].at", f"channels_last needs a 4-D or 5-D tensor, {lay['at']} is {old.dim()}-D")
            elif kind == "transposed":
                if old.dim() != 2:
                    raise SpecError(f"layout[{i}].at", f"transposed needs a 2-D tensor, {lay['at']} is {old.dim()}-D")
                new = old.detach().t().contiguous().t()
            else:  # offset: a view 3 elements into a larger storage
                base = torch.empty(old.numel() + 3, dtype=old.dtype, device=old.device)
                if not on_meta:
                    base[:3] = torch.zeros(3, dtype=old.dtype)
                new = base[3:].view(old.shape)
                if not on_meta:
                    new.copy_(old.detach())
        if attr in owner._parameters:
            setattr(owner, attr, nn.Parameter(new, requires_grad=old.requires_grad))
        else:
            owner._buffers[attr] = new


def _parametrization(kind: str) -> Callable[..., Any]:
    """The function that applies parametrize kind `kind`; Unsupported where this torch lacks it."""
    if kind == "weight_norm_legacy":
        fn = getattr(torch.nn.utils, "weight_norm", None)
        if fn is None:
            raise Unsupported("torch.nn.utils.weight_norm (the legacy weight_g/weight_v hook) does not exist in this torch")
        return _legacy_weight_norm
    try:
        from torch.nn.utils import parametrizations
    except ImportError:
        raise Unsupported("this torch has no torch.nn.utils.parametrizations") from None
    fn = getattr(parametrizations, kind, None)
    if fn is None:
        msg = f"torch.nn.utils.parametrizations.{kind} does not exist in this torch"
        raise Unsupported(msg)
    return fn


def _legacy_weight_norm(owner: nn.Module, name: str) -> None:
    """``torch.nn.utils.weight_norm``: parameters ``<name>_g``/``<name>_v`` and a pre-forward hook.

    Newer torch deprecates it in favour of the parametrization; the spec asks
    for the legacy form on purpose (checkpoints still hold it), so only that
    warning is silenced.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*weight_norm is deprecated.*")
        torch.nn.utils.weight_norm(owner, name=name)
    # The hook stores the weight it computes as a plain attribute, a non-leaf
    # tensor of the autograd graph, which copy.deepcopy refuses (a checkpoint
    # save copies the model). Detached it is a leaf with the same values, and
    # every forward recomputes it from weight_g/weight_v anyway.
    setattr(owner, name, getattr(owner, name).detach())


def _parametrize(model: nn.Module, spec: Spec) -> None:
    for i, par in enumerate(spec.data.get("parametrize", [])):
        owner = _submodule(model, par.get("at") or "")
        name = par.get("param", "weight")
        if name not in owner._parameters:
            raise SpecError(f"parametrize[{i}].param", f"{type(owner).__name__} has no parameter {name!r}")
        fn = _parametrization(par["kind"])
        try:
            fn(owner, name=name)
        except (RuntimeError, NotImplementedError) as e:  # e.g. orthogonal's right_inverse on the meta device
            msg = f"parametrize[{i}]: this torch cannot apply {par['kind']} to {par.get('at') or 'the root'}.{name} here: {type(e).__name__}: {e}"
            raise Unsupported(msg) from e


def make_training(model: nn.Module, spec: Spec) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """A fresh optimizer and LR scheduler for `model`, as the spec trains it."""
    train = spec.data.get("train") or {}
    params = [p for p in _unique_params(model) if p.requires_grad]
    if not params:  # torch.optim refuses an empty parameter list
        msg = f"{spec.name} has no parameter that requires grad, so there is no optimizer or scheduler state"
        raise Unsupported(msg)
    lr = float(train.get("lr", 1e-3))
    opt_name = train.get("optimizer", "adam")
    if opt_name == "sgd":
        optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9)
    elif opt_name == "adamw":
        optimizer = torch.optim.AdamW(params, lr=lr)
    else:
        optimizer = torch.optim.Adam(params, lr=lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
    return optimizer, scheduler


def _unique_params(model: nn.Module) -> list[nn.Parameter]:
    seen: set[int] = set()
    out = []
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def _loss(outputs: tuple[torch.Tensor, ...], train: dict[str, Any]) -> torch.Tensor:
    if train.get("loss") == "cross_entropy":
        logits = outputs[0]
        target = torch.full((logits.shape[0],), int(train.get("target", 0)), dtype=torch.long, device=logits.device)
        return nn.functional.cross_entropy(logits, target)
    total = None
    for out in outputs:
        if out.is_floating_point() or out.is_complex():
            term = (out.real if out.is_complex() else out).float().pow(2).mean()
            total = term if total is None else total + term
    if total is None:
        raise Unsupported("training needs a floating point output")
    return total


def _train(built: Built) -> None:
    train = built.spec.data.get("train")
    try:
        built.optimizer, built.scheduler = make_training(built.model, built.spec)
    except Unsupported:
        if train:
            raise
        return  # nothing to optimize: the checkpoint format reports the skip
    if not train:
        return
    if built.inputs is None:
        raise Unsupported(f"{built.spec.name}: training needs example inputs; return (module, inputs) from the factory")
    built.model.train()
    try:
        for _ in range(int(train.get("steps", 1))):
            built.optimizer.zero_grad()
            loss = _loss(built.model(*built.inputs), train)
            loss.backward()
            built.optimizer.step()
            built.scheduler.step()
            built.step += 1
            built.losses.append(float(loss.detach()))
    except (RuntimeError, NotImplementedError) as e:
        msg = f"this torch cannot train {built.spec.name}: {type(e).__name__}: {e}"
        raise Unsupported(msg) from e
    finally:
        built.model.eval()


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
    inputs: tuple[torch.Tensor, ...], spec: Spec,
) -> None:
    """One step of the spec's training on `inputs`: what a resumed run does first.

    The same code runs at save time (on a copy of the saved state) and after
    a load, so with the same kernels the two must agree bit for bit.
    """
    train = spec.data.get("train") or {}
    model.train()
    try:
        optimizer.zero_grad()
        _loss(model(*inputs), train).backward()
        optimizer.step()
        scheduler.step()
    finally:
        model.eval()


def make_inputs(spec: Spec, device: str = "cpu") -> tuple[torch.Tensor, ...]:
    """The fixed forward inputs: seeded, so every env draws the same ones from its own RNG.

    Cross-version comparisons never rely on that: saves store the inputs'
    bytes, and loads read them back from the reference file.
    """
    out = []
    for k, sig in enumerate(input_signatures(spec.data["model"])):
        g = torch.Generator().manual_seed(spec.seed * 1009 + k)
        shape = input_shape(sig, spec.data["batch"])
        if sig[0] == "tokens":
            x = torch.randint(0, sig[1], shape, generator=g)
        elif sig[2] == "complex64":
            x = torch.randn(shape, generator=g, dtype=torch.complex64)
        else:
            x = torch.randn(shape, generator=g).to(to_dtype(sig[2]))
        out.append(x.to(device))
    return tuple(out)


def poison(model: nn.Module) -> None:
    """Fill every parameter and persistent buffer with POISON_BYTE, in place."""
    keep = set()
    for mod in model.modules():
        for name in getattr(mod, "_non_persistent_buffers_set", ()):
            buf = mod._buffers.get(name)
            if buf is not None and not buf.is_sparse:  # sparse tensors have no storage (and are never poisoned)
                keep.add(storage_span(buf)[0])
    done: set[int] = set()
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_sparse or t.device.type == "meta":
            continue
        ptr, nbytes = storage_span(t)
        if ptr in keep or ptr in done or nbytes == 0:
            continue
        done.add(ptr)
        if t.device.type == "cpu":
            ctypes.memset(ptr, POISON_BYTE, nbytes)
            continue
        storage = untyped_storage(t)
        if storage is None:
            raise Unsupported(f"this torch has no untyped_storage() to poison a {t.device.type} tensor's bytes")
        with torch.no_grad():
            torch.empty(0, dtype=torch.uint8, device=t.device).set_(storage).fill_(POISON_BYTE)


@contextlib.contextmanager
def _skip_init() -> Iterator[None]:
    """Make torch.nn.init's fillers no-ops while modules are constructed.

    Layers call ``init.kaiming_uniform_`` and friends from their
    ``reset_parameters``; skipping them leaves uninitialised storage, which
    the empty mode poisons anyway (the trick transformers' ``no_init_weights``
    uses). It keeps building the model a state dict is loaded into cheap even
    for multi-GB models, without the meta device's pitfalls (``to_empty``
    breaks ties, parametrizations register differently).
    """
    import torch.nn.init as init

    names = [n for n in dir(init) if n.endswith("_") and not n.startswith("_") and callable(getattr(init, n))]
    saved = {n: getattr(init, n) for n in names}

    def noop(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return tensor

    try:
        for n in names:
            setattr(init, n, noop)
        yield
    finally:
        for n, fn in saved.items():
            setattr(init, n, fn)


def _meta_device() -> Any:
    """``torch.device("meta")`` as the default device of what is built inside it; Unsupported where torch lacks that."""
    # torch < 2.0: torch.device is no context manager (and knows no meta device)
    if not hasattr(torch.device, "__enter__"):
        raise Unsupported("this torch cannot build a model on the meta device (torch.device is not a context manager)")
    return torch.device("meta")


def _assemble(spec: Spec, mode: str) -> CaseModel:
    # A class_path builds the same CaseModel under another class path (a class that moved).
    cls = moved_class(spec.class_path) if spec.class_path else CaseModel
    model = cls(_plan(spec.data["model"]))
    # The root container's children live on the CaseModel itself, so state
    # dict keys read like a hand-written model's ("fc1.weight").
    for name, child in _construct(spec.data["model"], "model").named_children():
        try:
            model.add_module(name, child)
        except KeyError:
            raise SpecError(f"model.children[{name}]", f"{name!r} clashes with an nn.Module attribute; rename the child") from None
    _add_extras(model, spec, on_meta=mode == "meta")
    _tie(model, spec)
    if mode == "init":
        _plant(model, spec)
    _relayout(model, spec, on_meta=mode == "meta")
    if mode == "empty":
        poison(model)  # parametrizations compute from the weights: give them finite bytes
    _parametrize(model, spec)
    if mode == "empty":
        poison(model)
    return model


def from_factory(spec: Spec) -> tuple[nn.Module, Optional[tuple[torch.Tensor, ...]]]:
    """Call a user case's factory: a module, or a (module, example inputs) pair."""
    ref = spec.factory
    assert ref is not None, "from_factory is only called for user cases"
    from harness.runtime.refactor import import_ref

    try:
        fn = import_ref(ref, "user case")
    except InputError as e:  # not importable in this env: the cells say so, as skips
        raise FactoryUnavailable(str(e)) from None
    made = fn()
    inputs = None
    if isinstance(made, tuple) and len(made) == 2 and isinstance(made[0], nn.Module):
        made, inputs = made
        inputs = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
        if not all(isinstance(t, torch.Tensor) for t in inputs):
            raise FactoryUnavailable(f"user case {ref}: example inputs must be a tensor or a tuple of tensors")
    if not isinstance(made, nn.Module):
        msg = f"user case {ref} returned a {type(made).__name__}; return an nn.Module or (module, example_inputs)"
        raise FactoryUnavailable(msg)
    return made, inputs


def _build_user_case(spec: Spec, mode: str, device: str) -> Built:
    if mode == "meta":
        with _meta_device():
            model, inputs = from_factory(spec)
    elif mode == "empty":
        with _skip_init():
            model, inputs = from_factory(spec)
        poison(model)
    else:
        model, inputs = from_factory(spec)
    if device not in ("cpu", "meta"):
        model = model.to(device)
        inputs = tuple(t.to(device) for t in inputs) if inputs else inputs
    model.eval()
    return Built(spec, model, inputs)


def build(spec: Spec, mode: str = "init", device: str = "cpu") -> Built:
    """Build `spec` in this env (see the module docstring for the modes)."""
    if mode not in ("init", "empty", "meta"):
        raise ValueError(f"mode={mode!r}")
    if spec.factory:
        with torch_state(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.manual_seed(spec.seed)
            built = _build_user_case(spec, mode, device)
            if mode == "init":
                _train(built)
        return built
    # Warnings about zero-element init or sparse invariants are about the
    # spec, which asks for exactly that; they would only drown the logs.
    with torch_state(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(spec.seed)
        if mode == "meta":
            with _meta_device():
                model = _assemble(spec, mode)
        elif mode == "empty":
            with _skip_init():
                model = _assemble(spec, mode)
        else:
            model = _assemble(spec, mode)
        if device not in ("cpu", "meta"):
            model = model.to(device)
        model.eval()
        built = Built(spec, model, make_inputs(spec, device if device != "meta" else "cpu"))
        if mode == "init":
            _train(built)
    return built
