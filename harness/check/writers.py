"""Which torch releases write a file like this one: told from its bytes, never guessed.

Every fact below says what a release's writer puts in a file, and how it is
known: checked on files that torch 1.4.0, 1.5.1, 1.6.0, 1.7.1, 1.8.1,
1.13.1, 2.0.1, 2.1.2, 2.2.2, 2.3.1, 2.4.1, 2.5.1, 2.6.0, 2.8.0 and 2.15.0
saved (``torch.save`` to a path, a buffer and an open file;
``torch.jit.script`` and ``torch.jit.trace`` then ``save``;
``torch.export.save``), and on the golden corpus. Releases are named to
the minor version (``2.4`` is any 2.4.x), and a bound is only as tight as
the releases checked: where 2.6.0 lacks a record and 2.8.0 has it, a file
with it is from ``torch >= 2.7``, and one without it from ``<= 2.7``.

Two kinds of fact:

- *hard*: a record or value only releases from (or up to) a given one
  write. The file names it, so its writer is such a release (or a forger).
- *soft*: a record every release from a given one always writes, missing.
  Its absence bounds the writer from above, unless a hard fact says the
  writer is newer: then the missing record is itself evidence (the archive
  was rewritten, or written by something other than torch), and is said so.

`zip_writer`, `legacy_writer` and `tar_writer` return a `writer` dict for
`Sniffed.writer` (and so `FileReport.writer`): ``releases`` (one line for
a person), ``evidence`` (what in the bytes says so), ``first`` and
``last`` (the bounds as release strings, None where open). None where the
bytes cannot tell (safetensors, numpy and plain pickles record no torch
release). Standard library only; files are read, never loaded.
"""

from __future__ import annotations

import json
import re
import zipfile
from typing import Any, Optional, Tuple

__all__ = ["EXPORT_SCHEMAS", "legacy_writer", "release_range", "schema_range", "tar_writer", "zip_writer"]

Release = Tuple[int, ...]  # (2, 4) is any 2.4.x; (2, 5, 1) is 2.5.1 exactly

#: Records read for their value are this small in every torch file (a
#: version number, a byte order): anything longer is not torch's.
_SMALL = 64
#: torch.export's program JSON is read whole (its graph); larger ones are not read.
_MAX_PROGRAM_JSON = 64 << 20

# -- facts: torch.save's zip archive and TorchScript's (both written by PyTorchStreamWriter) ---

#: The ``version`` record (kProducedFileFormatVersion) -> (first, last)
#: release writing it. torch.save zip archives (opt-in with
#: _use_new_zipfile_serialization=True before 1.6) and TorchScript alike:
#: 1.4.0 writes 1, 1.5.1 writes 2, 1.6.0 onwards 3 (checked 1.6.0 to
#: 2.15.0). TorchScript writes more where its code calls operators whose
#: semantics changed (4 and 10 seen in 1.13.1 to 2.15.0; from 6 on in a
#: ``.data/version`` record): any value from 3 up says 1.6 or later.
_VERSION_RELEASES: dict[int, tuple[Optional[Release], Optional[Release]]] = {
    1: (None, (1, 4)),
    2: ((1, 5), (1, 5)),
}
_VERSION_FROM_3 = (1, 6)
#: 1.6.0, 1.7.1 and 1.8.1 name every torch.save archive's folder "archive",
#: whether saved to a path, a buffer or an open file; 1.13.1 onwards name it
#: after the file saved to (1.9 - 1.12 not checked), as 1.4 and 1.5 did.
_NAMED_FOLDER_FROM = (1, 9)
_DEFAULT_FOLDER = "archive"
#: ``byteorder`` and ``.data/serialization_id``: 2.0.1 writes neither,
#: 2.1.2 onwards both, in torch.save and TorchScript archives alike (the
#: C++ writer adds them: even torch.save's _disable_byteorder_record=True
#: leaves a byteorder record in 2.1.2 to 2.15.0).
_BYTEORDER_FROM = (2, 1)
_BYTEORDER_UNTIL = (2, 0)
#: ``.format_version`` and ``.storage_alignment`` (torch.save only, written
#: right after data.pkl): 2.6.0 writes neither, 2.8.0 both (2.7 not checked).
_FORMAT_VERSION_FROM = (2, 7)
_FORMAT_VERSION_UNTIL = (2, 7)
#: ``traced_inputs.pkl`` (a traced TorchScript module keeps its example
#: inputs): 1.13.1 does not write it, 2.0.1 onwards do. Scripted modules never do.
_TRACED_INPUTS_FROM = (2, 0)

# -- facts: torch.export archives ----------------------------------------------

#: The program's ``schema_version`` (torch._export.serde.schema.SCHEMA_VERSION)
#: each release checked writes, in release order: it only grows, so a file's
#: version lies between those of the releases around it. A bare int is (int, 0).
EXPORT_SCHEMAS: tuple[tuple[Release, tuple[int, int]], ...] = (
    ((2, 1), (1, 0)),  # 2.1.2: schema_version 1 (and a "version" record "1")
    ((2, 2), (2, 0)),  # 2.2.2: 2
    ((2, 3), (5, 1)),  # 2.3.1
    ((2, 4), (5, 3)),  # 2.4.1 (and the golden corpus)
    ((2, 5), (7, 3)),  # 2.5.1
    ((2, 6), (8, 2)),  # 2.6.0
    ((2, 8), (8, 8)),  # 2.8.0 (2.7 not checked)
    ((2, 15), (8, 20)),  # 2.15.0
)
#: Until 2.6.0 torch.export.save writes ``serialized_exported_program.json``
#: at the archive's root; 2.8.0 onwards write a "pt2" package
#: (``archive_format`` record, ``models/<name>.json``); 2.7 not checked.
_PT2_FROM = (2, 7)
_FLAT_EXPORT_UNTIL = (2, 7)
#: 2.5.1 onwards record the release itself in the program JSON (``torch_version``).
_TORCH_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")


# -- ranges ----------------------------------------------------------------------


def _text(release: Release) -> str:
    return ".".join(str(n) for n in release)


def _minor(release: Release) -> Release:
    return release[:2]


class _Range:
    """The releases a file's writer may be, and why: hard bounds first, then the soft ones that fit them."""

    def __init__(self) -> None:
        self.first: Optional[Release] = None
        self.last: Optional[Release] = None
        self.exact: Optional[Release] = None  # the release the file names itself (torch.export's torch_version)
        self.evidence: list[str] = []
        self.contradiction = ""
        self._soft: list[tuple[Release, str]] = []

    def hard(self, first: Optional[Release], last: Optional[Release], why: str) -> None:
        """The file holds something only releases `first`..`last` write (None: open)."""
        self.evidence.append(why)
        if first is not None and (self.first is None or first > self.first):
            self.first = first
        if last is not None and (self.last is None or last < self.last):
            self.last = last
        if self.first is not None and self.last is not None and self.first > self.last and not self.contradiction:
            self.contradiction = why

    def soft(self, last: Release, why: str) -> None:
        """The file lacks what every release after `last` writes: a bound, unless a hard fact says newer."""
        self._soft.append((last, why))

    def writer(self) -> Optional[dict[str, Any]]:
        """The `writer` dict, None when nothing in the file told anything."""
        for last, why in self._soft:
            if self.first is not None and self.first > last:
                self.evidence.append(f"{why}, though the records above say torch >= {_text(self.first)}: "
                                     "the archive was rewritten, or not written by torch itself")
                continue
            self.evidence.append(why)
            if self.last is None or last < self.last:
                self.last = last
        if not self.evidence:
            return None
        if self.contradiction:
            return {"releases": "no torch release writes all of these records (a crafted or rewritten archive)",
                    "evidence": self.evidence, "first": None, "last": None}
        if self.exact is not None:
            minor = _minor(self.exact)
            if (self.first is None or minor >= self.first) and (self.last is None or minor <= self.last):
                return {"releases": f"torch {_text(self.exact)}", "evidence": self.evidence,
                        "first": _text(self.exact), "last": _text(self.exact)}
            self.evidence.append(f"the release it names, {_text(self.exact)}, is not one that writes the records above")
        return {"releases": release_range(self.first, self.last), "evidence": self.evidence,
                "first": _text(self.first) if self.first else None, "last": _text(self.last) if self.last else None}


def release_range(first: Optional[Release], last: Optional[Release]) -> str:
    """``torch 1.6 - 2.0``, ``torch >= 2.7``, ``torch <= 1.4``, ``torch 2.4``, or ``any torch release``."""
    if first is None and last is None:
        return "any torch release"
    if first is None:
        return f"torch <= {_text(last)}"  # type: ignore[arg-type]  # set: both None handled above
    if last is None:
        return f"torch >= {_text(first)}"
    if first == last:
        return f"torch {_text(first)}"
    return f"torch {_text(first)} - {_text(last)}"


# -- zip archives ----------------------------------------------------------------


def _small_record(zf: zipfile.ZipFile, name: str) -> Optional[str]:
    """A short record's text, stripped; None when it is long, unreadable or not text."""
    try:
        info = zf.getinfo(name)
        if info.file_size > _SMALL:
            return None
        return zf.read(name).decode("ascii").strip()
    except Exception:  # a damaged record: it tells nothing (the sniffer reports the damage)
        return None


def _stream_writer_facts(zf: zipfile.ZipFile, prefix: str, base: set, found: _Range, *, torch_save: bool) -> Optional[int]:
    """What PyTorchStreamWriter's own records say (torch.save and TorchScript archives); the version record's number."""
    where = ".data/version" if ".data/version" in base else "version"
    value = _small_record(zf, prefix + where) if where in base else None
    version = int(value) if value is not None and value.isdigit() else None
    if version is not None:
        if version in _VERSION_RELEASES:
            first, last = _VERSION_RELEASES[version]
            found.hard(first, last, f"record {where} is {version}: {release_range(first, last)} writes that")
        elif version >= 3:
            found.hard(_VERSION_FROM_3, None, f"record {where} is {version}: torch >= {_text(_VERSION_FROM_3)} writes 3 or more")
        else:
            found.evidence.append(f"record {where} is {version}, which no release checked writes")
    # data.pkl: torch.save wrote it (TorchScript names its folder after the file in every release).
    if torch_save and version == 3 and "data.pkl" in base and prefix not in ("", f"{_DEFAULT_FOLDER}/"):
        found.hard(_NAMED_FOLDER_FROM, None, f"its records sit in folder {prefix[:-1][:60]!r}, not {_DEFAULT_FOLDER!r}: "
                   f"torch 1.6 - 1.8 always write {_DEFAULT_FOLDER!r}")
    marks = [r for r in ("byteorder", ".data/serialization_id") if r in base]
    if marks:
        found.hard(_BYTEORDER_FROM, None, f"record {' and '.join(marks)}: torch >= {_text(_BYTEORDER_FROM)} writes {'them' if len(marks) > 1 else 'it'}")
    elif version is not None:
        found.soft(_BYTEORDER_UNTIL, f"no byteorder or .data/serialization_id record, which torch >= {_text(_BYTEORDER_FROM)} always writes")
    return version


def _torch_save_facts(zf: zipfile.ZipFile, prefix: str, base: set, found: _Range) -> None:
    version = _stream_writer_facts(zf, prefix, base, found, torch_save=True)
    marks = [r for r in (".format_version", ".storage_alignment") if r in base]
    if marks:
        values = ", ".join(f"{r}={_small_record(zf, prefix + r)}" for r in marks)
        found.hard(_FORMAT_VERSION_FROM, None, f"record {values}: torch >= {_text(_FORMAT_VERSION_FROM)} writes {'them' if len(marks) > 1 else 'it'}")
    elif "data.pkl" in base and version is not None:
        found.soft(_FORMAT_VERSION_UNTIL, "no .format_version record, which torch.save writes after data.pkl "
                   f"in every release after {_text(_FORMAT_VERSION_UNTIL)}")


def _torchscript_facts(zf: zipfile.ZipFile, prefix: str, base: set, found: _Range) -> None:
    _stream_writer_facts(zf, prefix, base, found, torch_save=False)
    if "traced_inputs.pkl" in base:
        found.hard(_TRACED_INPUTS_FROM, None, f"record traced_inputs.pkl: torch >= {_text(_TRACED_INPUTS_FROM)} keeps a traced module's inputs")


def _schema(value: Any) -> Optional[tuple[int, int]]:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, 0)
    if isinstance(value, dict) and isinstance(value.get("major"), int) and isinstance(value.get("minor"), int):
        return (value["major"], value["minor"])
    return None


def schema_range(schema: tuple[int, int]) -> tuple[Optional[Release], Optional[Release]]:
    """The releases that may write `schema`: from the last checked one writing no more, to the first writing no less."""
    first = max((r for r, s in EXPORT_SCHEMAS if s <= schema), default=None)
    last = min((r for r, s in EXPORT_SCHEMAS if s >= schema), default=None)
    return first, last


def _exported_facts(zf: zipfile.ZipFile, names: list[str], prefix: str, base: set, found: _Range) -> None:
    if "archive_format" in base:
        found.hard(_PT2_FROM, None, f"record archive_format ({_small_record(zf, prefix + 'archive_format')!r}): "
                   f"torch >= {_text(_PT2_FROM)} writes torch.export's pt2 package")
        programs = [n for n in names if n.startswith(prefix + "models/") and n.endswith(".json")]
    elif "serialized_exported_program.json" in names:
        found.soft(_FLAT_EXPORT_UNTIL, "serialized_exported_program.json at the archive's root, which torch.export.save "
                   f"writes up to {_text(_FLAT_EXPORT_UNTIL)}")
        programs = ["serialized_exported_program.json"]
    else:
        return
    if "byteorder" in base or ".data/serialization_id" in base:
        found.hard(_BYTEORDER_FROM, None, f"record byteorder or .data/serialization_id: torch >= {_text(_BYTEORDER_FROM)} writes it")
    for name in programs[:1]:
        try:
            info = zf.getinfo(name)
            program = json.loads(zf.read(name)) if info.file_size <= _MAX_PROGRAM_JSON else None
        except Exception:  # damaged or not JSON: the sniffer reports it; it tells no release
            program = None
        if not isinstance(program, dict):
            continue
        schema = _schema(program.get("schema_version"))
        if schema is not None:
            first, last = schema_range(schema)
            found.hard(first, last, f"{name}: schema_version {schema[0]}.{schema[1]}, which {release_range(first, last)} writes")
        named = program.get("torch_version")
        m = _TORCH_VERSION.match(named) if isinstance(named, str) else None
        if m:
            found.exact = tuple(int(g) for g in m.groups() if g is not None)
            found.evidence.append(f"{name} records torch_version {str(named)[:40]!r}")


def zip_writer(zf: zipfile.ZipFile, kind: str) -> Optional[dict[str, Any]]:
    """The releases that write an archive like `zf`, read as `kind` (torch_zip, torchscript or exported); None if untold."""
    names = zf.namelist()
    first = names[0] if names else ""
    prefix = first.split("/", 1)[0] + "/" if "/" in first else ""  # the folder torch's reader takes, as `sniff` does
    base = {n[len(prefix):] for n in names if n.startswith(prefix)}
    found = _Range()
    if kind == "torch_zip":
        _torch_save_facts(zf, prefix, base, found)
    elif kind == "torchscript":
        _torchscript_facts(zf, prefix, base, found)
    elif kind == "exported":
        _exported_facts(zf, names, prefix, base, found)
    return found.writer()


# -- the other formats torch wrote ---------------------------------------------


def legacy_writer() -> dict[str, Any]:
    """The legacy stream: torch.save's default up to 1.5 (1.5.1 writes it, 1.6.0 a zip), any release's on request."""
    return {
        "releases": "torch < 1.6, or any later release with _use_new_zipfile_serialization=False",
        "evidence": ["the legacy (non-zip) torch.save stream: torch.save's default before 1.6, "
                     "and what every later release writes with _use_new_zipfile_serialization=False"],
        "first": None, "last": None,
    }


def tar_writer() -> dict[str, Any]:
    """torch.save's tar archive, which no release has written since 0.4."""
    return {
        "releases": "torch < 0.4",
        "evidence": ["the members torch.save wrote before 0.4 (sys_info, pickle, storages, tensors), in a tar archive"],
        "first": None, "last": "0.3",
    }

