"""Refactor groups (issue 13, point 5): per refactor, the remap and the migration's verdict, in every output."""

from __future__ import annotations

import base64
import json
import re
import struct
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from report_fixtures import (
    MIGRATE,
    REMAP_QKV,
    STRICT,
    A,
    B,
    line,
    miniature,
    refactor_lines,
    refactors,
    write_expectations,
    write_results,
)

from harness.report.build import build_report
from harness.report.html import pack
from harness.report.jsonout import read_report, report_dict
from harness.report.markdown import summary_markdown
from harness.report.merge import merge_dirs, write_merged
from harness.report.model import build_model
from harness.report.refactors import is_refactor_cell, refactor_groups, remap_summary
from harness.runtime.errors import InputError
from harness.runtime.expect import Expectations

DIFF = {"tensor": "attn.k.weight", "aspect": "bits", "expected": "0x3f800000", "actual": "0x3f800001", "index": [1, 2]}


def model_of(tmp_path, lines=None):
    folder = write_results(tmp_path / "R", refactor_lines() if lines is None else lines)
    return build_model([folder], Expectations.load(write_expectations(tmp_path)))


def group(model, case):
    (g,) = [g for g in model.refactors if g.case == case]
    return g


def test_cells_are_grouped_per_refactor(tmp_path):
    model = model_of(tmp_path)
    assert [(g.case, g.load_as) for g in model.refactors] == [
        ("refactor_moved", "variant"), ("refactor_qkv", "variant"), ("user_net", "newpkg.models:make"),
    ]
    # the one cell that loads into unchanged code belongs to no group
    assert sum(g.cells for g in model.refactors) == len(model.cells) - 2
    assert not any(is_refactor_cell(r) for r in model.cells if r.case == "simple_net")
    qkv = group(model, "refactor_qkv")
    # env pairs in torch-release order
    assert [(p.source, p.target) for p in qkv.pairs] == [(A, B), (B, A)]
    for p in qkv.pairs:
        assert p.plain == {"error": 2}
        assert p.diagnoses == {"model_code_changed": 2}
        assert p.plain_text() == "2 error"
        assert [m.name for m in p.migrations] == ["the proposed remap, applied"]
        assert p.renames == []
    exact, wrong = (p.migrations[0] for p in qkv.pairs)
    assert (exact.verdict, exact.explanation()) == ("exact", "")
    assert wrong.verdict == "mismatch"
    assert wrong.differences() == [{"tensor": "attn.k.weight", "aspect": "bits", "expected": "0x3f800000", "actual": "0x3f800001", "index": "[1, 2]"}]
    assert wrong.explanation() == "attn.k.weight[1, 2] bits: 0x3f800000 -> 0x3f800001"
    # the migration's cell is findable on the page: its position among the report's cells
    assert model.cells[wrong.index].load == MIGRATE and model.keys[wrong.index] == wrong.key
    moved = group(model, "refactor_moved")
    for p in moved.pairs:
        assert p.diagnoses == {"class_moved": 1}
        assert [(m.name, m.verdict) for m in p.renames] == [("roundtrip_moved.m.Net → harness.runtime.casemodel.CaseModel", "exact")]
    user = group(model, "user_net")
    assert [m.name for p in user.pairs for m in p.migrations] == ["newpkg.migrations:migrate"] * 2


def test_verdicts(tmp_path):
    model = model_of(tmp_path)
    assert group(model, "refactor_qkv").verdict().to_dict() == {"kind": "mismatch", "text": "migration mismatched in 1 of 2 env pairs"}
    assert group(model, "user_net").verdict().to_dict() == {"kind": "exact", "text": "migration exact in every env pair (2)"}
    assert group(model, "refactor_moved").verdict().to_dict() == {"kind": "exact", "text": "class rename exact in every env pair (2)"}
    # plain loads alone: nothing was migrated
    only_plain = [d for d in refactor_lines() if d["case"] == "refactor_qkv" and "migrate" not in d["load"]]
    assert model_of(tmp_path / "plain", only_plain).refactors[0].verdict().to_dict() == {"kind": "none", "text": "no migration ran"}
    # migrations that could not run here are no verdict either
    skipped = only_plain + [line(A, B, "refactor_qkv", "state_dict", "skip", MIGRATE, load_as="variant", detail="not saved in A")]
    assert model_of(tmp_path / "skip", skipped).refactors[0].verdict().to_dict() == {"kind": "none", "text": "no migration ran (1 skipped)"}


def test_one_mismatched_env_is_not_exact_everywhere(tmp_path):
    """Damage: the same run with one migration cell changed to a mismatch flips the verdict."""
    good = [d for d in refactor_lines() if d["case"] == "user_net"]
    assert model_of(tmp_path / "good", good).refactors[0].verdict().kind == "exact"
    damaged = [dict(d) for d in good]
    victim = next(d for d in damaged if d["load"].get("migrate") and d["source"] == B)
    victim.update(outcome="mismatch", differences=[DIFF], detail="attn.k.weight[1, 2]: bits")
    v = model_of(tmp_path / "bad", damaged).refactors[0].verdict()
    assert v.kind == "mismatch"
    assert v.text == "migration mismatched in 1 of 2 env pairs"
    assert "exact" not in v.text
    # an error in a migration is a failure too, never "exact"
    victim.update(outcome="error", differences=[], detail="KeyError: 'encoder.fc.weight'")
    assert model_of(tmp_path / "err", damaged).refactors[0].verdict().to_dict() == {"kind": "failed", "text": "migration failed in 1 of 2 env pairs"}


def test_remap_digests_preferred_and_disagreements_shown(tmp_path):
    model = model_of(tmp_path)
    qkv = group(model, "refactor_qkv")
    # every pair's plain loads proposed it from names, its migration confirmed it by digests: one remap, by digests
    (finding,) = qkv.remaps
    assert finding.found_by == {(A, B): "digests", (B, A): "digests"}
    assert finding.summary == "1 split, 2 weight_norm mapped, 1 dropped, 1 added, 2 kept"
    assert finding.same == 2
    assert qkv.remap_line() == finding.summary
    assert [(s.source, s.target, s.differed) for s in qkv.superseded] == [(A, B, False), (B, A, False)]
    assert qkv.superseded_lines() == [
        "the remap confirmed by digests was preferred to the one proposed from names, which agreed with it, in every env pair (2)"
    ]
    assert finding.how(len(qkv.pairs)) == "found by digests in every env pair (2)"
    assert finding.how() == f"found by digests in {A} → {B}, {B} → {A}"
    # B -> A found another remap by digests, and only a names proposal from A -> B
    other = {**REMAP_QKV, "found_by": "digests", "summary": "1 split, 1 dropped, 2 kept", "entries": REMAP_QKV["entries"][:1] + REMAP_QKV["entries"][3:4]}
    lines = [
        line(A, B, "refactor_qkv", "state_dict", "error", STRICT, load_as="variant", remap=REMAP_QKV),
        line(B, A, "refactor_qkv", "state_dict", "error", STRICT, load_as="variant", remap=REMAP_QKV),
        line(B, A, "refactor_qkv", "state_dict", "pass", MIGRATE, load_as="variant", remap=other),
    ]
    g = model_of(tmp_path / "disagree", lines).refactors[0]
    assert not g.remaps_agree
    # each with the env pairs that found it, and how (most env pairs first, then by summary)
    assert [(f.summary, f.found_by) for f in g.remaps] == [
        ("1 split, 1 dropped, 2 kept", {(B, A): "digests"}), ("1 split, 2 weight_norm mapped, 1 dropped, 1 added, 2 kept", {(A, B): "names"}),
    ]
    assert g.remaps[1].how() == f"found by names in {A} → {B}"
    assert g.remap_line().startswith("env pairs disagree: ")
    assert f"1 split, 1 dropped, 2 kept ({B} → {A})" in g.remap_line()
    assert [s.line() for s in g.superseded] == [
        f"{B} → {A}: the remap confirmed by digests was preferred to the one proposed from names "
        "(1 split, 2 weight_norm mapped, 1 dropped, 1 added, 2 kept), which differed from it"
    ]


def test_remap_summary_is_counted_when_absent():
    remap = {"entries": [{"kind": "rename", "old": ["a"], "new": ["b"]}, {"kind": "added", "old": [], "new": ["c"]},
                         {"kind": "rename", "old": ["d"], "new": ["e"]}], "same": 0, "found_by": "names"}
    assert remap_summary(remap) == "2 renamed, 1 added"
    assert remap_summary({**remap, "same": 4}) == "2 renamed, 1 added, 4 kept"
    assert remap_summary({"entries": [], "same": 3}) == "nothing moved (3 kept)"


def test_a_malformed_remap_is_an_input_error(tmp_path):
    bad = [line(A, B, "refactor_qkv", "state_dict", "error", STRICT, load_as="variant", remap={"entries": [{"kind": "rename", "old": "a"}]})]
    folder = write_results(tmp_path / "R", bad)
    with pytest.raises(InputError, match=r"remap entries\[0\]\.old='a' is not a list of tensor names"):
        build_report([folder], tmp_path / "out")
    assert not (tmp_path / "out" / "index.html").exists()  # checked before anything is written
    with pytest.raises(InputError, match="remap has no list of entries"):
        refactor_groups(model_of(tmp_path / "x", [line(A, B, "c", "state_dict", "error", remap={"same": 1})]).cells, ["k"])


def test_html_section(tmp_path):
    build_report([refactors(tmp_path / "R")], tmp_path / "out", expectations=write_expectations(tmp_path))
    html = (tmp_path / "out" / "index.html").read_text()
    section = html[html.index('<section id="refactors-section">'):]
    section = section[: section.index("</section>")]
    blocks = re.findall(r'<div class="refactor" data-case="([^"]+)" data-load-as="([^"]+)" data-verdict="([^"]+)">', section)
    assert blocks == [("refactor_moved", "variant", "exact"), ("refactor_qkv", "variant", "mismatch"), ("user_net", "newpkg.models:make", "exact")]
    assert "migration mismatched in 1 of 2 env pairs" in section
    assert "migration exact in every env pair (2)" in section
    assert "class rename exact in every env pair (2)" in section
    assert "loaded into its load-side variant" in section and "<code>newpkg.models:make</code>" in section
    # the remap as a table: kind, old -> new, detail
    rows = re.findall(r'<tr data-kind="(\w+)">', section)
    assert rows == ["split", "parametrization", "parametrization", "dropped", "added", "rename"]
    assert "<code>attn.qkv.weight</code>" in section and "<code>attn.q.weight</code><br><code>attn.k.weight</code>" in section
    assert "along dim 0; float32[12, 4] cut into 3 x float32[4, 4]" in section
    assert "<code>out.parametrizations.weight.original0</code>" in section
    # per env pair: plain loads with their diagnosis, the migration's verdict, the mismatch's first difference
    assert "<b>model_code_changed</b> ×2" in section and "<b>class_moved</b>" in section
    assert '<span class="badge o-pass">exact</span>' in section and '<span class="badge o-mismatch">mismatch</span>' in section
    assert "<td><code>attn.k.weight</code></td><td>bits</td><td><code>0x3f800000</code></td><td><code>0x3f800001</code></td><td><code>[1, 2]</code></td>" in section
    assert "migration: newpkg.migrations:migrate" in section and "migration: the proposed remap, applied" in section
    # links filter the cell list by the same query keys the page reads, and name the cell to open
    model = build_model([tmp_path / "R"], Expectations.load(write_expectations(tmp_path)))
    wrong = group(model, "refactor_qkv").pairs[1].migrations[0]
    assert f'data-cell="{wrong.index}"' in section
    assert "href=\"?case=refactor_qkv&amp;source=torch-2.15.0-py3.11-cpu&amp;target=torch-2.4.1-py3.11-cpu&amp;format=state_dict&amp;q=apply%3Dstrict%3Bmap_location%3Dnone%3Bmigrate%3Dremap" in section


def test_packed_cells_carry_load_side_and_remap(tmp_path):
    model = model_of(tmp_path)
    d = pack(model)
    column = _decode(d["cols"]["rf"])
    S = d["strings"]
    for i, r in enumerate(model.cells):
        if r.load_as is None and r.remap is None:
            assert column[i] == 0
            continue
        side, remap, how = (S[j] for j in d["refactors"][column[i] - 1])
        assert side == r.load_as
        assert (remap, how) == ((r.remap["summary"], r.remap["found_by"]) if r.remap else ("", ""))


def _decode(col: dict) -> list:
    raw = base64.b64decode(col["b64"])
    code = {"u8": "B", "u16": "H", "u32": "I"}[col["t"]]
    return list(struct.unpack(f"<{len(raw) // struct.calcsize(code)}{code}", raw))


def test_markdown_lines(tmp_path):
    text = summary_markdown(model_of(tmp_path))
    assert "### Refactors (3: checkpoints loaded into changed model code)" in text
    assert "- ✅ refactor_moved → its load-side variant: class rename exact in every env pair (2); remap: no remap recorded" in text
    assert "- 🟥 refactor_qkv → its load-side variant: migration mismatched in 1 of 2 env pairs; remap: 1 split, 2 weight_norm mapped, 1 dropped, 1 added, 2 kept" in text
    assert "- ✅ user_net → `newpkg.models:make`: migration exact in every env pair (2); remap: 1 renamed, 1 kept" in text
    assert text.index("### Refactors") < text.index("### Top failures")


def test_results_json_refactors(tmp_path):
    build_report([refactors(tmp_path / "R")], tmp_path / "out", expectations=write_expectations(tmp_path))
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["schema"] == 1
    groups = {(g["case"], g["load_as"]): g for g in data["refactors"]}
    assert list(groups) == [("refactor_moved", "variant"), ("refactor_qkv", "variant"), ("user_net", "newpkg.models:make")]
    qkv = groups[("refactor_qkv", "variant")]
    assert qkv["verdict"] == {"kind": "mismatch", "text": "migration mismatched in 1 of 2 env pairs"}
    assert qkv["remaps"][0]["summary"] == "1 split, 2 weight_norm mapped, 1 dropped, 1 added, 2 kept"
    assert [p["found_by"] for p in qkv["remaps"][0]["pairs"]] == ["digests", "digests"]
    second = qkv["pairs"][1]
    assert (second["source"], second["target"]) == (B, A)
    assert second["plain"] == {"outcomes": {"error": 2}, "diagnoses": {"model_code_changed": 2}}
    assert second["migrations"][0]["verdict"] == "mismatch"
    assert second["migrations"][0]["differences"][0]["tensor"] == "attn.k.weight"
    # the cells keep load_as and remap, and read back as the same groups
    cell = next(c for c in data["cells"] if c["case"] == "refactor_qkv" and c["load"].get("migrate"))
    assert cell["load_as"] == "variant" and cell["remap"]["found_by"] == "digests"
    back = read_report(tmp_path / "out")
    assert [g.to_dict() for g in back.refactors] == data["refactors"]


def test_load_as_and_remap_survive_merge(tmp_path):
    lines = refactor_lines()
    one = write_results(tmp_path / "one", [d for d in lines if d["target"] == B])
    two = write_results(tmp_path / "two", [d for d in lines if d["target"] == A])
    write_merged(merge_dirs([one, two]), tmp_path / "merged")
    merged = build_model([tmp_path / "merged"], Expectations.load(write_expectations(tmp_path)))
    direct = model_of(tmp_path / "direct")
    assert [g.to_dict() for g in merged.refactors] == [g.to_dict() for g in direct.refactors]
    by_key = {(r.target, k): r for k, r in zip(merged.keys, merged.cells)}
    for k, r in zip(direct.keys, direct.cells):
        assert (by_key[(r.target, k)].load_as, by_key[(r.target, k)].remap) == (r.load_as, r.remap)


def test_no_section_without_refactor_cells(tmp_path):
    build_report([miniature(tmp_path / "R")], tmp_path / "out", expectations=write_expectations(tmp_path))
    out = tmp_path / "out"
    assert '<section id="refactors-section">' not in (out / "index.html").read_text()
    assert "Refactors" not in (out / "summary.md").read_text()
    assert json.loads((out / "results.json").read_text())["refactors"] == []
    assert report_dict(build_model([tmp_path / "R"]), generated="x", exit_status=0)["refactors"] == []


@pytest.mark.browser
def test_section_in_the_browser(tmp_path):
    """The section renders without errors or requests, and a migration's link lists and opens its cell."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs Playwright: pip install playwright")
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip(f"the browser test needs Chromium at {chromium} (Debian: apt-get install chromium)")
    build_report([refactors(tmp_path / "R")], tmp_path / "out", expectations=write_expectations(tmp_path))
    errors: list = []
    requests: list = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("request", lambda r: requests.append(r.url))
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", "data:")) else route.abort())
            page.goto((tmp_path / "out" / "index.html").as_uri())
            verdicts = page.eval_on_selector_all("#refactors-section div.refactor", "ds => ds.map(d => d.dataset.verdict)")
            assert verdicts == ["exact", "mismatch", "exact"]
            link = page.locator('#refactors-section div.refactor[data-case="refactor_qkv"] tr.rf-migration[data-verdict="mismatch"] a.cells-link')
            link.click()
            assert page.text_content("#count") == f"1 of {len(refactor_lines())} cells match"
            shown = page.eval_on_selector_all("#rows table.diffs tbody td", "ts => ts.map(t => t.textContent)")
            assert shown == ["attn.k.weight", "bits", "0x3f800000", "0x3f800001", "[1, 2]"]
            detail = page.text_content("#rows tr.detail")
            assert "loaded into its load-side variant · remap: 1 split, 2 weight_norm mapped, 1 dropped, 1 added, 2 kept (found by digests)" in detail
            query = parse_qs(urlparse(page.url).query)
            assert query["case"] == ["refactor_qkv"] and query["source"] == [B] and query["target"] == [A]
        finally:
            browser.close()
    assert errors == []
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []


def test_the_runtimes_remap_reads_as_recorded(tmp_path):
    """A remap as the load phase records it (`Remap.to_dict`) is what the groups show; a summary counted here reads the same."""
    from harness.runtime.refactor import Remap, RemapEntry

    remap = Remap([
        RemapEntry("split", ("attn.qkv.weight",), ("attn.q.weight", "attn.k.weight", "attn.v.weight"), 0, "cut in three"),
        RemapEntry("parametrization", ("out.weight_g",), ("out.parametrizations.weight.original0",)),
        RemapEntry("dropped", ("norm.count",), ()),
    ], 2, "digests").to_dict()
    json.dumps(remap)  # plain JSON, as a result line carries it
    g = model_of(tmp_path, [line(A, B, "refactor_qkv", "state_dict", "pass", MIGRATE, load_as="variant", remap=remap)]).refactors[0]
    assert g.remaps[0].remap == remap
    assert g.remap_line() == remap["summary"]
    assert remap_summary({k: v for k, v in remap.items() if k != "summary"}) == remap["summary"]
