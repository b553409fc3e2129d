"""What this torch does with a file under ``check``, asked of torch itself.

Feature detection, not version numbers: what ``torch.load``
does without ``weights_only``, which globals ``weights_only=True`` accepts,
which globals of a checkpoint it refuses, and whether torch's own zip
reader sees the archive that `harness.check.sniff` read. None of these unpickles
the file under check: the one ``torch.load`` here loads the harness's own
`_Probe` bytes. Also `one_line`, which boils torch's multi-line errors down
to the sentence that says what went wrong.
"""

from __future__ import annotations

import functools
import io
import os
import re
import warnings
import zipfile
from typing import Optional

from harness.check.sniffed import Sniffed
from harness.runtime.messages import clean

__all__ = [
    "default_weights_only",
    "one_line",
    "torch_view_problem",
    "unsafe_globals",
    "weights_only_allowlist",
]

class _Probe:
    """A class no torch allowlists: unpickling it tells a full unpickle from weights_only."""

    def __reduce__(self) -> tuple[type[_Probe], tuple[()]]:
        return (_Probe, ())


def default_weights_only() -> Optional[bool]:
    """What ``torch.load`` does when weights_only is not passed, here; None if it cannot tell.

    Asked of torch rather than read from its version: the harness saves a
    `_Probe` (its own bytes, not a file under check) and loads it without
    weights_only. torch refuses it where the default is weights_only=True
    (torch >= 2.6), and returns it where the default is a full unpickle;
    ``TORCH_FORCE_(NO_)WEIGHTS_ONLY_LOAD`` are honoured because torch reads them.
    """
    keys = ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    return _probe_default(tuple(os.environ.get(k) for k in keys))


@functools.lru_cache(maxsize=None)  # functools.cache is 3.9+; check runs in every env, 3.8 included
def _probe_default(environment: tuple[Optional[str], ...]) -> Optional[bool]:
    import pickle

    import torch

    buffer = io.BytesIO()
    torch.save(_Probe(), buffer)
    buffer.seek(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.4's FutureWarning about the default
        try:
            loaded = torch.load(buffer)
        except pickle.UnpicklingError:
            return True
        except Exception:  # neither answer: say so rather than guess
            return None
    return False if isinstance(loaded, _Probe) else None


def weights_only_allowlist() -> Optional[set[str]]:
    """The globals weights_only=True accepts here, or None where torch cannot list them."""
    try:
        import torch._weights_only_unpickler as wo
    except ImportError:
        return None
    get = getattr(wo, "_get_allowed_globals", None)
    if get is None:
        return None
    allowed = set(get())
    user = getattr(wo, "_get_user_allowed_globals", None)
    if user is not None:
        allowed |= set(user())
    return allowed


def unsafe_globals(sniffed: Sniffed) -> tuple[list[str], str, list[str]]:
    """The globals of `sniffed` that weights_only=True refuses: (names, where the list comes from, notes).

    torch's own finder where it has one and the archive is plain; otherwise the
    harness's pickle scan against the allowlist (or every global, where torch
    cannot list it). TorchScript classes (``__torch__.*``) are left out.
    """
    import torch

    notes: list[str] = []
    names = [g for g in sniffed.globals if not (sniffed.format == "torchscript" and g.startswith("__torch__."))]
    finder = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if sniffed.format == "torch_zip" and not sniffed.problems and finder is not None and not sniffed.computed_globals:
        try:
            return sorted(finder(sniffed.path)), "torch.serialization.get_unsafe_globals_in_checkpoint", notes
        except Exception as e:  # e.g. "Unsupported operand 149" for pickle protocol 4+
            notes.append(f"torch.serialization.get_unsafe_globals_in_checkpoint failed ({one_line(type(e).__name__, str(e))}); the harness's own scan is shown")
    allowed = weights_only_allowlist()
    if allowed is None:
        return sorted(names), "the harness's pickle scan (this torch cannot list weights_only's allowlist, so every global is shown)", notes
    return sorted(n for n in names if n not in allowed), "the harness's pickle scan against weights_only's allowlist", notes


def torch_view_problem(sniffed: Sniffed) -> Optional[str]:
    """Why torch's own zip reader may not see the archive that the sniffer read, or None.

    torch.load sends an archive with a constants.pkl record to torch.jit.load,
    and before torch 2.6 it does so even with weights_only=True
    (CVE-2025-32434). The sniffer found no such record with Python's
    zipfile; a crafted archive could show torch's reader (miniz) other
    records, so torch's own reader must agree before torch.load runs here.
    """
    import torch

    reader_type = getattr(torch._C, "PyTorchFileReader", None)
    if reader_type is None:
        return "this torch has no PyTorchFileReader to confirm what torch.load would read"
    try:
        records = set(reader_type(sniffed.path).get_all_records())
        with zipfile.ZipFile(sniffed.path) as zf:
            names = zf.namelist()
    except Exception as e:  # torch's reader refuses the archive: so would torch.load
        return f"torch's zip reader cannot open it ({one_line(type(e).__name__, str(e), 160)})"
    prefix = names[0].split("/", 1)[0] + "/" if names and "/" in names[0] else ""
    if "constants.pkl" in records:
        return "torch's zip reader sees a TorchScript archive (constants.pkl) that Python's zipfile does not: a crafted archive"
    if records != {n[len(prefix):] for n in names if n.startswith(prefix)}:
        return "torch's zip reader and Python's zipfile see different records: a crafted archive"
    return None


def one_line(etype: str, message: str, limit: int = 300) -> str:
    """torch's multi-line errors as one line, keeping the sentence that says what went wrong.

    A weights_only failure opens with general advice; its cause comes after
    "WeightsUnpickler error:" or in a later paragraph ("... is blocked").
    """
    text = clean(message, len(message))
    m = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\s*\n|$)", text, re.S)
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    if m and m.group(1).strip():
        text = m.group(1)
    elif paragraphs and paragraphs[0].startswith("Weights only load failed"):
        text = next((p for p in paragraphs[1:] if not p.startswith("Check the documentation")), paragraphs[0])
    else:
        text = next((line for line in text.splitlines() if line.strip()), "")
    return f"{etype}: {' '.join(text.split())}"[:limit]

