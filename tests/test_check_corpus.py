"""``check`` on the scanner corpus: code named in every malicious file, in no benign control.

The corpus (`tests.scanner_corpus`) re-implements the attack techniques of
the test suites of modelscan, fickling and picklescan, with payloads that
would only create a marker file. ``check`` runs here without ``--trust``,
so nothing may unpickle them: the marker must never appear.
"""

from __future__ import annotations

import pytest

from tests.scanner_corpus import BENIGN_COUNT, MALICIOUS_COUNT, CorpusFile, write_scanner_corpus

pytestmark = pytest.mark.slow  # generating the corpus saves torch and TorchScript files

UNTRUSTED = "do not load this file unless you trust it: "


@pytest.fixture(scope="module")
def checked(torch, tmp_path_factory):
    from harness.check.checker import check_file

    root = tmp_path_factory.mktemp("scanner-corpus")
    marker = root / "PAYLOAD_RAN"
    files = write_scanner_corpus(root / "files", marker)
    reports = [(f, check_file(f.path, cuda=False)) for f in files]
    assert not marker.exists(), "a payload ran while check read the corpus"
    return reports


def _describe(f: CorpusFile, report) -> str:
    return f"{f.name} ({f.container}: {f.technique}) -> {report.format}: {report.summary[:160]}"


def test_corpus_is_whole(checked):
    assert sum(f.malicious for f, _ in checked) == MALICIOUS_COUNT
    assert sum(not f.malicious for f, _ in checked) == BENIGN_COUNT


def test_every_malicious_file_is_named(checked):
    missed = [_describe(f, r) for f, r in checked if f.malicious and not r.runs_code]
    assert not missed, f"{len(missed)} malicious files not named:\n" + "\n".join(missed)
    for f, r in checked:
        if f.malicious:
            assert r.summary.startswith(UNTRUSTED), _describe(f, r)
            assert r.findings, _describe(f, r)


def test_no_benign_control_is_named(checked):
    named = [_describe(f, r) + f" {r.code_globals or r.script_escapes}" for f, r in checked if not f.malicious and r.runs_code]
    assert not named, "benign files named as code:\n" + "\n".join(named)


def test_every_code_entry_says_where_and_what(checked):
    """The verdict's details: a global with its pickle and byte offset, or a TorchScript call with its line."""
    for f, r in checked:
        for entry in r.code:
            assert entry["where"] and isinstance(entry["offset"], int) and entry["offset"] >= 0, (f.name, entry)
            assert entry["kind"] in ("known gadget", "unknown code"), (f.name, entry)
        for escape in r.script_escapes:
            assert ":" in escape["where"] and escape["call"], (f.name, escape)
