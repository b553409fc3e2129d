"""The tensor table: which parameters and buffers a drawn tree will have, without torch.

`layer_tensors` mirrors torch's layer constructors (a test checks it
against real builds), so the host draws extras without importing torch.
`model_tensors` lists a whole tree's tensors as `ModelTensor` records: the
candidates every extra (ties, planted values, layouts, parametrizations)
is drawn among.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.runtime.spec import walk_leaves
from harness.strategies.grammar import LEAF_KINDS

__all__ = ["ModelTensor", "has_parameters", "join_path", "layer_tensors", "model_tensors"]

# Kinds whose parameters are plain attributes of the leaf module: ties need
# that (RNNs keep a flat weight list, attention hides its weights in
# submodules), and validation only knows the spec's own module paths.
_TIEABLE = tuple(k for k in LEAF_KINDS if k.startswith(("linear", "conv", "batch_norm", "layer_norm", "group_norm", "embedding")))


def layer_tensors(kind: str, fields: dict[str, Any], dtype: str) -> list[tuple[str, list[int], str, str]]:
    """``(name, shape, dtype, role)`` of every tensor a `kind` leaf registers.

    Role is ``parameter`` or ``buffer`` (all persistent). Mirrors torch's
    constructors so that strategies need no torch; a test checks it against
    real builds.
    """
    f = fields
    out: list[tuple[str, list[int], str, str]] = []

    def param(name: str, shape: list[int]) -> None:
        out.append((name, shape, dtype, "parameter"))

    if kind == "linear":
        param("weight", [f["out_features"], f["in_features"]])
        if f["bias"]:
            param("bias", [f["out_features"]])
    elif kind.startswith("conv"):
        n = int(kind[-2])
        cin, cout, g, k = f["in_channels"], f["out_channels"], f["groups"], f["kernel_size"]
        first = [cin, cout // g] if "transpose" in kind else [cout, cin // g]
        param("weight", first + [k] * n)
        if f["bias"]:
            param("bias", [cout])
    elif kind.startswith("batch_norm"):
        c = f["num_features"]
        if f["affine"]:
            param("weight", [c])
            param("bias", [c])
        if f["track_running_stats"]:
            out.append(("running_mean", [c], dtype, "buffer"))
            out.append(("running_var", [c], dtype, "buffer"))
            out.append(("num_batches_tracked", [], "int64", "buffer"))
    elif kind in ("layer_norm", "group_norm"):
        c = f["normalized_shape"] if kind == "layer_norm" else f["num_channels"]
        if f.get("elementwise_affine", f.get("affine")):
            param("weight", [c])
            param("bias", [c])
    elif kind in ("embedding", "embedding_bag"):
        param("weight", [f["num_embeddings"], f["embedding_dim"]])
    elif kind in ("rnn", "lstm", "gru"):
        h = f["hidden_size"]
        gates = {"rnn": 1, "gru": 3, "lstm": 4}[kind] * h
        dirs = 2 if f["bidirectional"] else 1
        for layer in range(f["num_layers"]):
            for suffix in ("", "_reverse")[:dirs]:
                width = f["input_size"] if layer == 0 else h * dirs
                param(f"weight_ih_l{layer}{suffix}", [gates, width])
                param(f"weight_hh_l{layer}{suffix}", [gates, h])
                if f["bias"]:
                    param(f"bias_ih_l{layer}{suffix}", [gates])
                    param(f"bias_hh_l{layer}{suffix}", [gates])
    elif kind == "multihead_attention":
        out.extend(_attention_tensors(f["embed_dim"], f["bias"], f["add_bias_kv"], dtype, ""))
    elif kind.startswith("transformer_encoder"):
        layers_ = range(f.get("num_layers", 1)) if kind == "transformer_encoder" else [None]
        d, ff = f["d_model"], f["dim_feedforward"]
        for i in layers_:
            pre = "" if i is None else f"layers.{i}."
            out.extend(_attention_tensors(d, True, False, dtype, f"{pre}self_attn."))
            for name, shape in (
                ("linear1.weight", [ff, d]), ("linear1.bias", [ff]), ("linear2.weight", [d, ff]), ("linear2.bias", [d]),
                ("norm1.weight", [d]), ("norm1.bias", [d]), ("norm2.weight", [d]), ("norm2.bias", [d]),
            ):
                param(f"{pre}{name}", shape)
    return out


def _attention_tensors(e: int, bias: bool, bias_kv: bool, dtype: str, pre: str) -> list[tuple[str, list[int], str, str]]:
    """The tensors of a MultiheadAttention with embedding size `e`, names prefixed by `pre`."""
    out = [(f"{pre}in_proj_weight", [3 * e, e], dtype, "parameter")]
    if bias:
        out.append((f"{pre}in_proj_bias", [3 * e], dtype, "parameter"))
    if bias_kv:
        out += [(f"{pre}bias_k", [1, 1, e], dtype, "parameter"), (f"{pre}bias_v", [1, 1, e], dtype, "parameter")]
    out.append((f"{pre}out_proj.weight", [e, e], dtype, "parameter"))
    if bias:
        out.append((f"{pre}out_proj.bias", [e], dtype, "parameter"))
    return out


@dataclass(frozen=True)
class ModelTensor:
    """A tensor the drawn model will have, as the extras see it."""

    path: str
    shape: tuple[int, ...]
    dtype: str
    role: str  # parameter | buffer | buffer_np
    tieable: bool = False
    sparse: bool = False
    parametrizable: bool = False

    @property
    def numel(self) -> int:
        """The element count (0 for a zero-size tensor, 1 for a 0-dim one)."""
        n = 1
        for d in self.shape:
            n *= d
        return n


def join_path(path: str, name: str) -> str:
    """``"0.fc"`` + ``"weight"`` -> ``"0.fc.weight"``; the root's path is ``""``."""
    return f"{path}.{name}" if path else name


def model_tensors(model: dict[str, Any]) -> list[ModelTensor]:
    """Every tensor the layers of `model` register, as `ModelTensor` records in forward order."""
    out = []
    for leaf in walk_leaves(model):
        for name, shape, dtype, role in layer_tensors(leaf.kind, leaf.fields, leaf.dtype):
            direct = "." not in name
            out.append(ModelTensor(
                join_path(leaf.path, name), tuple(shape), dtype, role,
                tieable=direct and role == "parameter" and leaf.kind in _TIEABLE,
                parametrizable=name == "weight" and leaf.kind in ("linear", "conv1d", "conv2d", "conv3d")
                and dtype in ("float32", "float64") and all(shape),
            ))
    return out


def has_parameters(node: dict[str, Any]) -> bool:
    """Whether any layer under `node` registers a parameter."""
    return any(
        role == "parameter" for leaf in walk_leaves(node) for *_, role in layer_tensors(leaf.kind, leaf.fields, leaf.dtype)
    )
