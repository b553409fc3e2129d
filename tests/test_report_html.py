"""index.html without a browser: the packed columns, escaping, no external references, size."""

from __future__ import annotations

import base64
import json
import re
import struct

import pytest
from report_fixtures import (
    HISTORY_RELEASES,
    A,
    B,
    history,
    history_sources,
    line,
    miniature,
    write_expectations,
    write_results,
)

from harness.report.aggregate import category, release_grid
from harness.report.html import pack, render_html
from harness.report.model import build_model
from harness.runtime.expect import Expectations

_FMT = {"u8": "B", "u16": "H", "u32": "I", "f32": "f"}


def decode(col: dict) -> list:
    raw = base64.b64decode(col["b64"])
    code = _FMT[col["t"]]
    return list(struct.unpack(f"<{len(raw) // struct.calcsize(code)}{code}", raw))


def data_of(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S)
    assert m, "no data block"
    return json.loads(m.group(1))


@pytest.fixture
def model(tmp_path):
    return build_model([miniature(tmp_path / "R")], Expectations.load(write_expectations(tmp_path)))


def test_columns_decode_to_the_cells(model):
    d = pack(model)
    S = d["strings"]
    cols = {k: decode(v) for k, v in d["cols"].items()}
    assert d["n"] == len(model.cells)
    assert len(S) == len(set(S)), "the string table has duplicates"
    for i, (key, r) in enumerate(zip(model.keys, model.cells)):
        assert d["envs"][cols["src"][i]] == r.source
        assert d["envs"][cols["tgt"][i]] == r.target
        assert S[cols["case"][i]] == r.case
        assert d["formats"][cols["fmt"][i]] == r.format
        assert f"{r.source}|{r.case}|{r.format}|{S[cols['opt'][i]]}" == key
        assert d["outcomes"][cols["out"][i]] == r.outcome.value
        assert d["cats"][cols["cat"][i]] == category(r).value
        assert S[cols["det"][i]] == r.detail
        assert (S[cols["exp"][i] - 1] if cols["exp"][i] else None) == r.expectation
        if r.diagnosis:
            assert [S[j] for j in d["diags"][cols["diag"][i] - 1]] == [r.diagnosis["code"], r.diagnosis["summary"], r.diagnosis["fix"]]
        else:
            assert cols["diag"][i] == 0
        if r.error:
            assert S[d["errors"][cols["err"][i] - 1][2]] == r.error["message"]
        assert (d["forwards"][cols["fwd"][i] - 1] if cols["fwd"][i] else None) == r.forward
        if r.differences:
            assert [S[j] for j in d["diffs"][cols["diff"][i] - 1][0]] == ["fc.weight", "bits", "0x3f80", "0x3f81", "[0, 1]"]
        assert cols["sec"][i] == pytest.approx(r.seconds, rel=1e-6)
    assert d["envs"] == ["torch-2.4.1-py3.11-cpu", "torch-2.4.1-py3.11-cuda-emulated", "torch-2.15.0-py3.11-cpu"]
    assert [d["envs"][i] for i in d["targets"]] == [A, B]
    # the spec of the failing generated case travels; curated ones do not
    assert list(d["specs"]) == ["gen_7"]


def test_text_cannot_break_out_of_the_data_block(tmp_path):
    evil = "</script><script>window.pwned = 1</script><!--"
    folder = write_results(tmp_path / "R", [line(A, B, evil, "state_dict", "error", detail=evil)])
    html = render_html(build_model([folder], Expectations([])), generated="x", exit_status=1)
    assert html.count("</script>") == 2
    assert evil not in html
    d = data_of(html)
    assert evil in d["strings"]


def test_no_external_references(model):
    html = render_html(model, generated="x", exit_status=1)
    assert not re.search(r"""(?:src|href|action)\s*=\s*["']?(?:https?:|//)""", html, re.I)
    assert "@import" not in html and "url(" not in html
    assert "<link" not in html and "<img" not in html and "<iframe" not in html
    assert "default-src 'none'" in html  # the CSP that blocks a stray fetch


def test_repeated_strings_are_stored_once(tmp_path):
    def size(n: int) -> int:
        lines = [line(A, B, f"case{i % 10}", "state_dict", "error", {"map_location": f"m{i}"}, detail="the same long error message " * 20) for i in range(n)]
        folder = write_results(tmp_path / f"R{n}", lines)
        return len(render_html(build_model([folder], Expectations([])), generated="x", exit_status=1))

    small, big = size(100), size(2100)
    # 2000 more cells: their options strings (distinct here) and a few bytes of
    # columns each, never another copy of the 580-character detail.
    assert (big - small) / 2000 < 60


def test_header_shows_fingerprints_and_unknown_envs(tmp_path):
    folder = write_results(tmp_path / "R", [line(A, B, "a", "state_dict", "pass")], sidecar=False)
    html = render_html(build_model([folder], Expectations([])), generated="2024-05-01T00:00:00Z", exit_status=0)
    assert "fingerprint unknown: no env.json beside its results" in html
    assert "2024-05-01T00:00:00Z" in html
    assert "PASS: no regressions, no mismatches" in html


@pytest.fixture
def history_model(tmp_path):
    return build_model([history(tmp_path / "H")], Expectations.load(write_expectations(tmp_path)))


def test_release_section_with_three_releases_or_more(history_model):
    html = render_html(history_model, generated="x", exit_status=1)
    assert html.count('<section id="releases-section">') == 1
    assert html.index('id="formats-section"') < html.index('id="releases-section"') < html.index('id="cells-section"')
    assert "Releases: which format written by which release loads in which" in html
    section = html[html.index('id="releases-section"'):html.index("</section>", html.index('id="releases-section"'))]
    assert '<div id="releasegrid"' in section and 'id="releases-note"' in section
    # the legend reuses the verdict colours, with the symbols the cells show
    for cls, text in [("v-safe", "✓ safe"), ("v-known-issues", "~ known issues"), ("v-known-incompatible", "✗ known incompatible"),
                      ("v-regression", "! regression"), ("v-corrupts", "≠ corrupts"), ("v-na", "· n/a")]:
        assert f'<span class="sw {cls}">{text}</span>' in section


def test_no_release_section_with_two_releases(model):
    html = render_html(model, generated="x", exit_status=1)  # the miniature: 2.4.1 and 2.15.0
    assert "releases-section" not in html and 'id="releasegrid"' not in html


def test_packed_releases_let_the_page_fold_envs(history_model):
    """What the page's grids and release filter read: each env's release, in numeric order.

    Folding the packed columns the way the page does must give release_grid.
    """
    d = pack(history_model)
    assert d["releases"] == list(HISTORY_RELEASES)
    assert [d["releases"][i] for i in d["sourceReleases"]] == list(HISTORY_RELEASES)
    assert [d["releases"][i] for i in d["targetReleases"]] == list(HISTORY_RELEASES)
    # golden, live, emulated CUDA and other Pythons of one release share its index
    rel = dict(zip(d["envs"], d["envRelease"]))
    assert {rel[e] for e in history_sources("1.8.1")} == {d["releases"].index("1.8.1")}
    assert {rel[e] for e in history_sources("1.4.0")} == {0}
    cols = {k: decode(d["cols"][k]) for k in ("src", "tgt", "fmt")}
    folded: dict = {}
    for s, t, f in zip(cols["src"], cols["tgt"], cols["fmt"]):
        key = (d["formats"][f], d["releases"][d["envRelease"][s]], d["releases"][d["envRelease"][t]])
        folded[key] = folded.get(key, 0) + 1
    assert folded == {k: c.total for k, c in release_grid(history_model.cells).items()}
    assert d["verdictSymbols"] == {"safe": "✓", "known issues": "~", "known incompatible": "✗", "regression": "!", "corrupts": "≠", "n/a": "·"}
