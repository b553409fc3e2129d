"""The leaf layers a spec may use: their fields, dtypes, inputs and outputs.

Each kind declares its fields once (name, type, default, check); validation,
building, input synthesis and the Hypothesis strategies all read this table,
so adding a layer is one entry here.

Shapes flow through a chain as a *signature* ``(space, features, dtype)``:
``vec`` is ``(B, F)``, ``seq`` is ``(B, T, F)``, ``img1``/``img2``/``img3`` are
``(B, C, *spatial)``, ``tokens`` is ``(B, T)`` integers below ``features``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Optional, Tuple

if TYPE_CHECKING:
    import torch

__all__ = ["ACTIVATIONS", "KINDS", "REQUIRED", "Field", "LayerKind", "Sig", "input_shape", "make_module"]

Sig = Tuple[str, int, str]  # typing.Tuple: builtin generics are 3.9+, the runtime runs on 3.8

#: Sizes used for synthetic inputs: small, so thousands of cells stay cheap.
SEQ_LEN = 5
SPATIAL = {"img1": (8,), "img2": (6, 6), "img3": (4, 4, 4)}

ACTIVATIONS = ("relu", "gelu", "tanh", "sigmoid", "silu", "elu", "leaky_relu", "softplus")

REQUIRED = object()


@dataclass(frozen=True)
class Field:
    """One field of a layer spec: `check` returns an error message or None."""

    name: str
    type: type
    default: Any = REQUIRED
    check: Optional[Callable[[Any, dict[str, Any]], Optional[str]]] = None


@dataclass(frozen=True)
class LayerKind:
    """A leaf layer: how to validate, build and feed it."""

    name: str
    fields: tuple[Field, ...]
    dtypes: tuple[str, ...]
    build: Callable[[dict[str, Any], Optional[torch.dtype]], torch.nn.Module]
    accepts: Callable[[dict[str, Any], Sig], bool]
    output: Callable[[dict[str, Any], Sig], Sig]
    natural_input: Callable[[dict[str, Any], str], Sig]
    #: how the forward calls it: "plain" m(x), "first" m(x)[0], "attention" m(x, x, x)[0]
    call: str = "plain"
    has_params: bool = True


def input_shape(sig: Sig, batch: int) -> tuple[int, ...]:
    """The shape of a synthetic input with signature `sig`."""
    space, features, _ = sig
    if space == "vec":
        return (batch, features)
    if space == "seq":
        return (batch, SEQ_LEN, features)
    if space == "tokens":
        return (batch, SEQ_LEN)
    return (batch, features, *SPATIAL[space])


def _positive(v: int, _: dict[str, Any]) -> Optional[str]:
    return None if v >= 1 else "must be >= 1"


def _nonneg(v: int, _: dict[str, Any]) -> Optional[str]:
    return None if v >= 0 else "must be >= 0"


def _odd_kernel(v: int, _: dict[str, Any]) -> Optional[str]:
    return None if 1 <= v <= 7 and v % 2 == 1 else "must be odd and between 1 and 7 (size-preserving padding)"


def _prob(v: float, _: dict[str, Any]) -> Optional[str]:
    return None if 0.0 <= v < 1.0 else "must be in [0, 1)"


def _divides(other: str, *, into: str = "") -> Callable[[int, dict[str, Any]], Optional[str]]:
    def check(v: int, fields: dict[str, Any]) -> Optional[str]:
        if v < 1:
            return "must be >= 1"
        targets = [other] + ([into] if into else [])
        for t in targets:
            if t in fields and isinstance(fields[t], int) and fields[t] % v:
                return f"must divide {t}={fields[t]}"
        return None

    return check


def _one_of(*choices: str) -> Callable[[str, dict[str, Any]], Optional[str]]:
    def check(v: str, _: dict[str, Any]) -> Optional[str]:
        return None if v in choices else f"must be one of {', '.join(map(repr, choices))}"

    return check


def _kwargs_supported(cls: type[torch.nn.Module], **kwargs: Any) -> dict[str, Any]:
    """Only the keyword arguments this torch's `cls` accepts (feature detection)."""
    params = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in kwargs.items() if k in params}


def make_module(
    cls: type[torch.nn.Module], *args: Any, dtype: Optional[torch.dtype] = None,
    defaults: Optional[dict[str, Any]] = None, **kwargs: Any,
) -> torch.nn.Module:
    """``cls(*args, **kwargs)`` in this torch's dialect (feature detection).

    Modules take ``dtype=`` from torch 1.9 on; before it, the module is built
    in the default dtype and cast, which leaves the same dtypes (only
    floating-point tensors follow ``dtype`` either way). A keyword in
    `defaults` that this torch's `cls` lacks is dropped when it asks for that
    default (``batch_first=False`` is what a release without the knob does)
    and makes the build fail otherwise, which the save turns into a skip.
    """
    params = inspect.signature(cls.__init__).parameters
    for name, default in (defaults or {}).items():
        if name in kwargs and name not in params:
            if kwargs[name] != default:
                raise TypeError(f"this torch's {cls.__name__} has no {name}= (asked for {kwargs[name]!r})")
            del kwargs[name]
    if "dtype" in params:
        return cls(*args, dtype=dtype, **kwargs)
    module = cls(*args, **kwargs)
    return module if dtype is None else module.to(dtype)


FLOATS = ("float32", "float64", "float16", "bfloat16")
WITH_COMPLEX = FLOATS + ("complex64",)


def _same(_: dict[str, Any], sig: Sig) -> Sig:
    return sig


def _float_space(sig: Sig) -> bool:
    return sig[0] != "tokens"


# -- builders (torch imported lazily: this module is read on the host too) ---


def _nn() -> ModuleType:
    import torch.nn as nn

    return nn


def _linear(f: dict[str, Any], dtype: Optional[torch.dtype]) -> torch.nn.Module:
    return make_module(_nn().Linear, f["in_features"], f["out_features"], bias=f["bias"], dtype=dtype)


def _conv(n: int, transpose: bool) -> Callable[[dict[str, Any], Optional[torch.dtype]], torch.nn.Module]:
    def build(f: dict[str, Any], dtype: Optional[torch.dtype]) -> torch.nn.Module:
        nn = _nn()
        cls = getattr(nn, f"Conv{'Transpose' if transpose else ''}{n}d")
        return make_module(
            cls, f["in_channels"], f["out_channels"], f["kernel_size"],
            padding=f["kernel_size"] // 2, groups=f["groups"], bias=f["bias"], dtype=dtype,
        )

    return build


def _batch_norm(n: int) -> Callable[[dict[str, Any], Optional[torch.dtype]], torch.nn.Module]:
    def build(f: dict[str, Any], dtype: Optional[torch.dtype]) -> torch.nn.Module:
        cls = getattr(_nn(), f"BatchNorm{n}d")
        return make_module(cls, f["num_features"], affine=f["affine"], track_running_stats=f["track_running_stats"], dtype=dtype)

    return build


def _rnn(name: str) -> Callable[[dict[str, Any], Optional[torch.dtype]], torch.nn.Module]:
    def build(f: dict[str, Any], dtype: Optional[torch.dtype]) -> torch.nn.Module:
        cls = getattr(_nn(), name)
        extra = {"nonlinearity": f["nonlinearity"]} if name == "RNN" else {}
        return make_module(
            cls, f["input_size"], f["hidden_size"], num_layers=f["num_layers"], bias=f["bias"],
            batch_first=f["batch_first"], bidirectional=f["bidirectional"], dtype=dtype, **extra,
        )

    return build


def _encoder_layer(f: dict[str, Any], dtype: Optional[torch.dtype]) -> torch.nn.Module:
    nn = _nn()
    return make_module(
        nn.TransformerEncoderLayer, f["d_model"], f["nhead"], dim_feedforward=f["dim_feedforward"],
        dropout=f["dropout"], activation=f["activation"], batch_first=f["batch_first"], norm_first=f["norm_first"],
        dtype=dtype, defaults={"batch_first": False, "norm_first": False},
    )


def _encoder(f: dict[str, Any], dtype: Optional[torch.dtype]) -> torch.nn.Module:
    nn = _nn()
    # enable_nested_tensor only changes the fast path, and warns when it
    # cannot be used; ask for the plain path where this torch has the knob.
    extra = _kwargs_supported(nn.TransformerEncoder, enable_nested_tensor=False)
    return nn.TransformerEncoder(_encoder_layer(f, dtype), f["num_layers"], **extra)


def _activation(f: dict[str, Any], dtype: Optional[torch.dtype]) -> torch.nn.Module:
    names = {
        "relu": "ReLU", "gelu": "GELU", "tanh": "Tanh", "sigmoid": "Sigmoid", "silu": "SiLU",
        "elu": "ELU", "leaky_relu": "LeakyReLU", "softplus": "Softplus",
    }
    # Looked up by name: older releases lack some (SiLU arrived in 1.7), and
    # that must fail only the specs that ask for it.
    return getattr(_nn(), names[f["fn"]])()


def _features_in(name: str, *spaces: str) -> Callable[[dict[str, Any], Sig], bool]:
    def accepts(f: dict[str, Any], sig: Sig) -> bool:
        return sig[0] in spaces and sig[1] == f[name]

    return accepts


def _out_features(name: str, space: Optional[str] = None) -> Callable[[dict[str, Any], Sig], Sig]:
    def output(f: dict[str, Any], sig: Sig) -> Sig:
        return (space or sig[0], f[name], sig[2])

    return output


def _natural(space: str, name: str) -> Callable[[dict[str, Any], str], Sig]:
    def natural(f: dict[str, Any], dtype: str) -> Sig:
        return (space, f[name], dtype)

    return natural


def _conv_kind(n: int, transpose: bool) -> LayerKind:
    space = f"img{n}"
    return LayerKind(
        name=f"conv{'_transpose' if transpose else ''}{n}d",
        fields=(
            Field("in_channels", int, check=_positive),
            Field("out_channels", int, check=_positive),
            Field("kernel_size", int, 3, _odd_kernel),
            Field("groups", int, 1, _divides("in_channels", into="out_channels")),
            Field("bias", bool, True),
        ),
        dtypes=WITH_COMPLEX,
        build=_conv(n, transpose),
        accepts=_features_in("in_channels", space),
        output=_out_features("out_channels"),
        natural_input=_natural(space, "in_channels"),
    )


def _bn_kind(n: int) -> LayerKind:
    spaces = ("vec", "img1") if n == 1 else (f"img{n}",)
    return LayerKind(
        name=f"batch_norm{n}d",
        fields=(
            Field("num_features", int, check=_positive),
            Field("affine", bool, True),
            Field("track_running_stats", bool, True),
        ),
        dtypes=FLOATS,
        build=_batch_norm(n),
        accepts=_features_in("num_features", *spaces),
        output=_same,
        natural_input=_natural(spaces[0], "num_features"),
    )


def _rnn_kind(name: str, cls: str) -> LayerKind:
    fields = [
        Field("input_size", int, check=_positive),
        Field("hidden_size", int, check=_positive),
        Field("num_layers", int, 1, _positive),
        Field("bidirectional", bool, False),
        Field("batch_first", bool, False),
        Field("bias", bool, True),
    ]
    if name == "rnn":
        fields.append(Field("nonlinearity", str, "tanh", _one_of("tanh", "relu")))
    return LayerKind(
        name=name,
        fields=tuple(fields),
        dtypes=("float32", "float64"),
        build=_rnn(cls),
        accepts=_features_in("input_size", "seq"),
        output=lambda f, sig: ("seq", f["hidden_size"] * (2 if f["bidirectional"] else 1), sig[2]),
        natural_input=_natural("seq", "input_size"),
        call="first",
    )


_ENCODER_FIELDS = (
    Field("d_model", int, check=_positive),
    Field("nhead", int, check=_divides("d_model")),
    Field("dim_feedforward", int, check=_positive),
    Field("dropout", float, 0.0, _prob),
    Field("activation", str, "relu", _one_of("relu", "gelu")),
    Field("batch_first", bool, False),
    Field("norm_first", bool, False),
)


def _kinds() -> dict[str, LayerKind]:
    kinds = [
        LayerKind(
            name="linear",
            fields=(
                Field("in_features", int, check=_nonneg),
                Field("out_features", int, check=_nonneg),
                Field("bias", bool, True),
            ),
            dtypes=WITH_COMPLEX,
            build=_linear,
            accepts=_features_in("in_features", "vec", "seq"),
            output=_out_features("out_features"),
            natural_input=_natural("vec", "in_features"),
        ),
        *(_conv_kind(n, t) for t in (False, True) for n in (1, 2, 3)),
        *(_bn_kind(n) for n in (1, 2, 3)),
        LayerKind(
            name="layer_norm",
            fields=(Field("normalized_shape", int, check=_positive), Field("elementwise_affine", bool, True)),
            dtypes=FLOATS,
            build=lambda f, d: make_module(_nn().LayerNorm, f["normalized_shape"], elementwise_affine=f["elementwise_affine"], dtype=d),
            accepts=_features_in("normalized_shape", "vec", "seq"),
            output=_same,
            natural_input=_natural("vec", "normalized_shape"),
        ),
        LayerKind(
            name="group_norm",
            fields=(
                Field("num_groups", int, check=_divides("num_channels")),
                Field("num_channels", int, check=_positive),
                Field("affine", bool, True),
            ),
            dtypes=FLOATS,
            build=lambda f, d: make_module(_nn().GroupNorm, f["num_groups"], f["num_channels"], affine=f["affine"], dtype=d),
            accepts=_features_in("num_channels", "vec", "img1", "img2", "img3"),
            output=_same,
            natural_input=_natural("img2", "num_channels"),
        ),
        LayerKind(
            name="embedding",
            fields=(
                Field("num_embeddings", int, check=_positive),
                Field("embedding_dim", int, check=_positive),
                Field("padding_idx", object, None,
                      lambda v, f: None if v is None or (isinstance(v, int) and 0 <= v < f.get("num_embeddings", 0))
                      else "must be null or an index below num_embeddings"),
            ),
            dtypes=WITH_COMPLEX,
            build=lambda f, d: make_module(_nn().Embedding, f["num_embeddings"], f["embedding_dim"], padding_idx=f["padding_idx"], dtype=d),
            accepts=_features_in("num_embeddings", "tokens"),
            output=lambda f, sig: ("seq", f["embedding_dim"], sig[2]),
            natural_input=lambda f, dtype: ("tokens", f["num_embeddings"], dtype),
        ),
        LayerKind(
            name="embedding_bag",
            fields=(
                Field("num_embeddings", int, check=_positive),
                Field("embedding_dim", int, check=_positive),
                Field("mode", str, "mean", _one_of("mean", "sum", "max")),
            ),
            dtypes=FLOATS,
            build=lambda f, d: make_module(_nn().EmbeddingBag, f["num_embeddings"], f["embedding_dim"], mode=f["mode"], dtype=d),
            accepts=_features_in("num_embeddings", "tokens"),
            output=lambda f, sig: ("vec", f["embedding_dim"], sig[2]),
            natural_input=lambda f, dtype: ("tokens", f["num_embeddings"], dtype),
        ),
        _rnn_kind("rnn", "RNN"),
        _rnn_kind("lstm", "LSTM"),
        _rnn_kind("gru", "GRU"),
        LayerKind(
            name="multihead_attention",
            fields=(
                Field("embed_dim", int, check=_positive),
                Field("num_heads", int, check=_divides("embed_dim")),
                Field("bias", bool, True),
                Field("add_bias_kv", bool, False),
                Field("batch_first", bool, False),
            ),
            dtypes=FLOATS,
            build=lambda f, d: make_module(
                _nn().MultiheadAttention, f["embed_dim"], f["num_heads"], bias=f["bias"], add_bias_kv=f["add_bias_kv"],
                batch_first=f["batch_first"], dtype=d, defaults={"batch_first": False}),
            accepts=_features_in("embed_dim", "seq"),
            output=_same,
            natural_input=_natural("seq", "embed_dim"),
            call="attention",
        ),
        LayerKind(
            name="transformer_encoder_layer",
            fields=_ENCODER_FIELDS,
            dtypes=FLOATS,
            build=_encoder_layer,
            accepts=_features_in("d_model", "seq"),
            output=_same,
            natural_input=_natural("seq", "d_model"),
        ),
        LayerKind(
            name="transformer_encoder",
            fields=_ENCODER_FIELDS + (Field("num_layers", int, 1, _positive),),
            dtypes=FLOATS,
            build=_encoder,
            accepts=_features_in("d_model", "seq"),
            output=_same,
            natural_input=_natural("seq", "d_model"),
        ),
        LayerKind(
            name="dropout",
            fields=(Field("p", float, 0.5, _prob),),
            dtypes=(),
            build=lambda f, d: _nn().Dropout(f["p"]),
            accepts=lambda f, sig: _float_space(sig),
            output=_same,
            natural_input=lambda f, dtype: ("vec", 4, dtype),
            has_params=False,
        ),
        LayerKind(
            name="activation",
            fields=(Field("fn", str, "relu", _one_of(*ACTIVATIONS)),),
            dtypes=(),
            build=_activation,
            accepts=lambda f, sig: _float_space(sig),
            output=_same,
            natural_input=lambda f, dtype: ("vec", 4, dtype),
            has_params=False,
        ),
    ]
    return {k.name: k for k in kinds}


#: Every leaf kind, by the name a spec uses.
KINDS: dict[str, LayerKind] = _kinds()
