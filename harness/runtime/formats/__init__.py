"""Formats: one module each, behind the interface in `base`.

``FORMATS`` lists them in report order; `get` finds one by name with an
error that lists the others.
"""

from __future__ import annotations

from harness.runtime.errors import InputError
from harness.runtime.format_names import FORMAT_NAMES
from harness.runtime.formats.base import Format
from harness.runtime.formats.checkpoint import Checkpoint
from harness.runtime.formats.exported import Exported
from harness.runtime.formats.full_model import FullModel
from harness.runtime.formats.safetensors import Safetensors
from harness.runtime.formats.state_dict import StateDict
from harness.runtime.formats.state_dict_legacy import StateDictLegacy
from harness.runtime.formats.torchscript import TorchScript

__all__ = ["FORMATS", "Format", "get", "parse_formats"]

FORMATS: dict[str, Format] = {
    f.name: f
    for f in (StateDict(), StateDictLegacy(), FullModel(), TorchScript(), Exported(), Safetensors(), Checkpoint())
}
assert tuple(FORMATS) == FORMAT_NAMES, "harness.runtime.format_names is out of step with the format modules"


def get(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        msg = f"format={name!r} is not one of {', '.join(FORMATS)}"
        raise InputError(msg) from None


def parse_formats(text: str | None) -> list[Format]:
    """``"state_dict,full_model"`` -> formats; None or "all" -> every format."""
    if not text or text == "all":
        return list(FORMATS.values())
    return [get(n.strip()) for n in text.split(",") if n.strip()]
