import pytest

from harness.runtime.versions import matches, release


def test_release_strips_local_and_suffixes():
    assert release("2.4.1+cu121") == (2, 4, 1)
    assert release("2.6.0.dev20241112") == (2, 6, 0)


@pytest.mark.parametrize(
    ("version", "spec", "ok"),
    [
        ("2.5.1", ">=2.6", False),
        ("2.6.0", ">=2.6", True),
        ("2.10.0", ">=2.6", True),  # numeric, not string, comparison
        ("2.4.1", ">=2.1,<2.4", False),
        ("2.3.1", ">=2.1,<2.4", True),
        ("2.6.3", "2.6", True),
        ("2.7.0", "2.6", False),
        ("2.6.3", "!=2.6.*", False),
        ("2.4.0", "*", True),
    ],
)
def test_matches(version, spec, ok):
    assert matches(version, spec) is ok


def test_bad_specifier_is_named():
    with pytest.raises(ValueError, match="'>>2'"):
        matches("2.0", ">>2")
