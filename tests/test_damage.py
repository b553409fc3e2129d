"""The comparison can fail: every kind of damage to a loaded object is caught.

Each test saves a curated case for real, loads it through a real format,
then damages what came back (a flipped bit, a changed NaN payload, -0.0 made
+0.0, a cast, a lost tie, a dropped key, a perturbed Adam moment) before the
harness compares it. The cell must be a mismatch that names the tensor, the
first differing index and both values in hex. Undamaged, the same cells pass:
the check is not just always failing.
"""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch")

from conftest import Damaging  # noqa: E402

from harness import __version__  # noqa: E402
from harness.runtime.env import fingerprint  # noqa: E402
from harness.runtime.formats import FORMATS  # noqa: E402
from harness.runtime.load_options import LoadOptions  # noqa: E402
from harness.runtime.manifest import Manifest, module_snapshot  # noqa: E402
from harness.runtime.results import CellResult, Outcome  # noqa: E402
from harness.runtime.runner.cell import CaseContext, run_cell  # noqa: E402
from harness.runtime.runner.save import save_case  # noqa: E402

CASES = ("simple_net", "special_values", "mixed_dtypes", "tied_lm", "cnn_batchnorm")


@pytest.fixture(scope="module")
def saved(tmp_path_factory, curated_specs):
    root = tmp_path_factory.mktemp("damage")
    fp = fingerprint("cpu")
    out = {}
    for name in CASES:
        case_dir = root / name
        for m in save_case(curated_specs[name], case_dir, fp, list(FORMATS.values()), "cpu"):
            out[(name, m.format)] = (Manifest.from_dict(m.to_dict()), case_dir)
    return out, fp, curated_specs


def cell(saved, case, fmt_name, options, damage=None):
    table, fp, specs = saved
    manifest, case_dir = table[(case, fmt_name)]
    fmt = FORMATS[fmt_name] if damage is None else Damaging(FORMATS[fmt_name], damage)
    base = CellResult(source=fp.label, target=fp.label, case=case, format=fmt_name, load=options.to_dict(),
                      outcome=Outcome.SKIP, harness=__version__)
    ctx = CaseContext(specs[case].to_dict(), "cpu")
    return run_cell(base, manifest, fmt, options, case_dir / fmt_name, case_dir / "reference.bin", ctx, fp.compute_key)


RAW = LoadOptions(map_location="cpu", weights_only="true", mmap=False, apply="none")
STRICT = LoadOptions(map_location="cpu", weights_only="default", mmap=False, apply="strict")
RESUME = LoadOptions(map_location="cpu", weights_only="default", mmap=False, apply="resume")


def set_bits(t, flat_index, bits):
    view = {4: torch.int32, 2: torch.int16, 8: torch.int64}[t.element_size()]
    t.view(-1).view(view)[flat_index] = bits


def only_difference(result):
    assert result.outcome == Outcome.MISMATCH, result.detail
    assert len(result.differences) == 1, result.differences
    return result.differences[0]


@pytest.mark.parametrize(("case", "fmt", "options"), [
    ("simple_net", "state_dict", RAW), ("simple_net", "state_dict", STRICT), ("special_values", "state_dict_legacy", RAW),
    ("tied_lm", "state_dict", STRICT), ("simple_net", "checkpoint", RESUME), ("mixed_dtypes", "full_model", LoadOptions(map_location="none", weights_only="false", mmap=True, apply="none")),
])
def test_undamaged_cells_pass(saved, case, fmt, options):
    result = cell(saved, case, fmt, options)
    assert result.outcome == Outcome.PASS, result.detail


def test_one_flipped_bit(saved):
    def flip(loaded):
        t = loaded.snapshot.tensors["fc1.weight"][0]
        t.view(-1).view(torch.int32)[7] ^= 1  # lowest mantissa bit of element [0, 7]
        return loaded

    d = only_difference(cell(saved, "simple_net", "state_dict", RAW, flip))
    assert (d["tensor"], d["aspect"], d["index"]) == ("fc1.weight", "bits", [0, 7])
    want, got = int(d["expected"].split()[0], 16), int(d["actual"].split()[0], 16)
    assert want ^ got == 1


def test_nan_payload_change(saved):
    def requiet(loaded):  # 0x7fc0dead -> the canonical quiet NaN: still "a NaN"
        set_bits(loaded.snapshot.tensors["f32.weight"][0], 1, 0x7FC00000)
        return loaded

    d = only_difference(cell(saved, "special_values", "state_dict", RAW, requiet))
    assert (d["tensor"], d["index"]) == ("f32.weight", [0, 1])
    assert d["expected"].startswith("0x7fc0dead (nan)") and d["actual"].startswith("0x7fc00000 (nan)")


def test_negative_zero_made_positive(saved):
    def unsign(loaded):
        t = loaded.snapshot.tensors["f64.weight"][0]  # special values: -0.0 is element 6
        assert str(t.view(-1)[6].item()) == "-0.0"
        t.view(-1)[6] = 0.0
        return loaded

    d = only_difference(cell(saved, "special_values", "state_dict", RAW, unsign))
    assert (d["tensor"], d["index"]) == ("f64.weight", [1, 2])
    assert d["expected"] == "0x8000000000000000 (-0.0)" and d["actual"] == "0x0000000000000000 (0.0)"


def test_bfloat16_cast_to_float32(saved):
    def widen(loaded):
        t, role = loaded.snapshot.tensors["bf16.weight"]
        loaded.snapshot.tensors["bf16.weight"] = (t.float(), role)
        return loaded

    d = only_difference(cell(saved, "mixed_dtypes", "state_dict", RAW, widen))
    assert (d["tensor"], d["aspect"], d["expected"], d["actual"]) == ("bf16.weight", "dtype", "bfloat16", "float32")


def test_untied_weights(saved):
    def untie(loaded):
        model = loaded.module
        model.head.weight = torch.nn.Parameter(model.head.weight.detach().clone())
        return dataclasses.replace(loaded, snapshot=module_snapshot(model))

    result = cell(saved, "tied_lm", "state_dict", STRICT, untie)
    d = only_difference(result)
    assert d["aspect"] == "alias" and d["tensor"] == "embed.weight, head.weight"
    assert "tie lost" in d["actual"]


def test_dropped_key(saved):
    def drop(loaded):
        del loaded.snapshot.tensors["fc2.bias"]
        return loaded

    d = only_difference(cell(saved, "simple_net", "state_dict", RAW, drop))
    assert (d["tensor"], d["aspect"]) == ("fc2.bias", "missing")


def test_perturbed_adam_moment(saved):
    def nudge(loaded):
        t = loaded.snapshot.tensors["optimizer.state.2.exp_avg_sq"][0]
        t.view(-1)[5] = torch.nextafter(t.view(-1)[5], torch.tensor(1.0))
        return loaded

    d = only_difference(cell(saved, "simple_net", "checkpoint", RESUME, nudge))
    assert (d["tensor"], d["aspect"], d["index"]) == ("optimizer.state.2.exp_avg_sq", "bits", [0, 5])


def test_changed_optimizer_hyperparameter(saved):
    def relr(loaded):
        loaded.snapshot.values["optimizer.param_groups.0.lr"] = "float:0.002"
        return loaded

    d = only_difference(cell(saved, "simple_net", "checkpoint", RESUME, relr))
    assert (d["tensor"], d["aspect"]) == ("optimizer.param_groups.0.lr", "value")


def test_forward_that_changed_in_the_same_env_is_a_mismatch(saved):
    def rescale(loaded):
        # Parameters intact, but the model computes something else.
        loaded.module.relu = torch.nn.Tanh()
        return loaded

    result = cell(saved, "simple_net", "full_model", LoadOptions(map_location="none", weights_only="false", mmap=False, apply="none"), rescale)
    d = only_difference(result)
    assert (d["tensor"], d["aspect"]) == ("output0", "forward")
    assert result.forward["status"] == "drift" and result.forward["same_kernels"] is True


def test_poison_reveals_a_tensor_the_load_forgot(saved, monkeypatch):
    # A strict load that silently skipped one tensor leaves the poisoned
    # bytes of the fresh model: a mismatch, never a lucky pass.
    real = torch.nn.Module.load_state_dict

    def forgetful(self, state_dict, *args, **kwargs):
        state_dict = dict(state_dict)
        del state_dict["fc1.bias"]
        return real(self, state_dict, strict=False)

    monkeypatch.setattr(torch.nn.Module, "load_state_dict", forgetful)
    result = cell(saved, "simple_net", "state_dict", STRICT)
    assert result.outcome == Outcome.MISMATCH
    d, forward = result.differences
    assert (d["tensor"], d["aspect"], d["index"]) == ("fc1.bias", "bits", [0])
    assert d["actual"].startswith("0xa5a5a5a5")
    assert forward["aspect"] == "forward"  # and the model computes something else


def _hide_buffers(names, flip=False):
    """A TorchScript load as an old archive looks in a newer torch: buffers only as attributes."""
    def damage(loaded):
        for name in names:
            t, _ = loaded.snapshot.tensors.pop(name)
            if flip:
                t.view(-1).view(torch.int32)[0] ^= 1
        return loaded
    return damage


def test_buffers_found_as_attributes_are_compared_bit_for_bit(saved):
    ts = LoadOptions(map_location="cpu")
    names = ["bn1.running_mean", "bn1.running_var"]
    ok = cell(saved, "cnn_batchnorm", "torchscript", ts, _hide_buffers(names))
    assert ok.outcome == Outcome.PASS, ok.detail
    assert any(n.startswith("torchscript_buffers_as_attributes: bn1.running_mean, bn1.running_var") for n in ok.notes)
    bad = cell(saved, "cnn_batchnorm", "torchscript", ts, _hide_buffers(names[:1], flip=True))
    assert bad.outcome == Outcome.MISMATCH  # the bits, and (same kernels) the forward that uses them
    d = bad.differences[0]
    assert (d["tensor"], d["aspect"]) == ("bn1.running_mean", "bits")
