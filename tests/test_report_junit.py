"""junit.xml: valid against the Jenkins JUnit schema, one testcase per cell, the right markings."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from report_fixtures import XSD, A, B, copy_real, line, miniature, write_expectations, write_results

from harness.report.junit import junit_xml, write_junit
from harness.report.model import build_model
from harness.runtime.expect import Expectations

xmlschema = pytest.importorskip("xmlschema", reason="validating junit.xml needs xmlschema (in the test extra)")


@pytest.fixture(scope="module")
def schema():
    return xmlschema.XMLSchema(str(XSD))


@pytest.fixture
def model(tmp_path):
    return build_model([miniature(tmp_path / "R")], Expectations.load(write_expectations(tmp_path)))


def test_valid_against_the_jenkins_schema(model, schema, tmp_path):
    path = tmp_path / "junit.xml"
    write_junit(path, model)
    schema.validate(str(path))


def test_the_schema_rejects_what_it_should(schema):
    # Guard against a schema that accepts anything: a testsuite without its
    # required counts must not validate.
    bad = '<testsuites><testsuite name="x"><testcase name="y"/></testsuite></testsuites>'
    assert not schema.is_valid(bad)


def test_real_results_validate(schema, tmp_path):
    model = build_model([copy_real(tmp_path / "R")])
    text = junit_xml(model)
    schema.validate(text)
    assert ET.fromstring(text).get("tests") == str(len(model.cells))


def test_structure_and_markings(model):
    root = ET.fromstring(junit_xml(model))
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert sorted(suites) == sorted(f"{s} -> {t}" for s, t in [
        (A, B), ("torch-2.4.1-py3.11-cuda-emulated", B), (B, B), (B, A), (A, A),
    ])
    assert sum(len(s.findall("testcase")) for s in suites.values()) == len(model.cells) == int(root.get("tests"))
    assert root.get("failures") == "5"

    ab = suites[f"{A} -> {B}"]
    assert (ab.get("tests"), ab.get("failures"), ab.get("skipped"), ab.get("errors")) == ("5", "1", "2", "0")
    props = {p.get("name"): p.get("value") for p in ab.find("properties")}
    assert props == {"source": A, "target": B, "expected_failures": "1", "skips": "1"}
    cases = {c.get("name"): c for c in ab.findall("testcase")}
    assert set(cases) == {
        "simple_net state_dict [apply=none;map_location=none;mmap=0;weights_only=default]",
        "simple_net state_dict [apply=none;map_location=none;mmap=1;weights_only=default]",
        "simple_net full_model [apply=none;map_location=none;mmap=0;weights_only=default]",
        "tied_lm state_dict [apply=none;map_location=none;mmap=0;weights_only=default]",
        "simple_net torchscript [map_location=none]",
    }
    passed = cases["simple_net state_dict [apply=none;map_location=none;mmap=0;weights_only=default]"]
    assert list(passed) == []
    mismatch = cases["tied_lm state_dict [apply=none;map_location=none;mmap=0;weights_only=default]"].find("failure")
    assert mismatch.get("type") == "mismatch"
    assert mismatch.get("message").startswith("MISMATCH: fc.weight[0, 1]")
    assert "\ndifference: fc.weight[0, 1]: bits 0x3f80 -> 0x3f81\n" in mismatch.text
    assert 'reproduce: nox -s "load(torch-2.15.0-py3.11-cpu)" -- --cell ' in mismatch.text
    expected = cases["simple_net full_model [apply=none;map_location=none;mmap=0;weights_only=default]"]
    assert expected.find("failure") is None
    skipped = expected.find("skipped")
    assert skipped.get("type") == "expected-failure"
    assert skipped.get("message").startswith("expected failure [weights-only-default-refuses-pickled-module]: error:")
    assert skipped.text == "fix: torch.load(f, weights_only=False) if you trust the file"
    skip = cases["simple_net torchscript [map_location=none]"].find("skipped")
    assert skip.get("type") == "skip" and skip.get("message").startswith("not saved in")

    bb = suites[f"{B} -> {B}"]
    types = sorted(c.find("failure").get("type") for c in bb.findall("testcase"))
    assert types == ["crash", "error"]


def test_text_xml_cannot_carry_is_replaced(schema, tmp_path):
    bad = "bad \x00 byte \x1b[31m and \ud800 surrogate"
    folder = write_results(tmp_path / "R", [line(A, B, "c<&>\"'", "state_dict", "error", detail=bad, error={"type": "E", "module": "m", "message": bad})])
    text = junit_xml(build_model([folder], Expectations([])))
    schema.validate(text)
    failure = ET.fromstring(text).find("testsuite/testcase/failure")
    assert "bad \ufffd byte \ufffd[31m and \ufffd surrogate" in failure.get("message")
    assert ET.fromstring(text).find("testsuite/testcase").get("name").startswith("c<&>\"'")
