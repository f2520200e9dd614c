"""The shape of study/, read from its imports (ast): wings that depend one way, no cycle,
MLflow only in stores/, Ray only in the Ray executor and the Jobs commands, and no private
name imported across modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STUDY = ROOT / "study"
#: What each wing may import from study/ (besides itself).
ALLOWED = {
    "cli": {"run", "query", "stores", "record", "spec"},
    "run": {"stores", "record", "spec"},
    "query": {"stores", "record", "spec"},
    "stores": {"record", "spec"},
    "record": {"spec"},
    "spec": set(),
    "": {"query"},  # study/__init__.py: study.load
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


#: Modules at the spec's floor: what a study is asked to do (the spec, a comparison's design
#: and its measures, the built-in lessons).
SPEC_FLOOR = ("spec", "comparison", "measures", "lessons", "errors")
#: Modules of the record: the schema (`study.names` holds the MLflow names without imports).
RECORD = ("record", "names")


def wing(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return ""
    if parts[1] in RECORD:
        return "record"
    return "spec" if parts[1] in SPEC_FLOOR else parts[1]


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every import in the file, lazy ones included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names]))
    return out


FILES = sorted(p for p in STUDY.rglob("*.py"))
GRAPH = {module_name(p): imports(p) for p in FILES}


def study_deps(module: str) -> set[str]:
    deps = set()
    for target, names in GRAPH[module]:
        if target == "study" or target.startswith("study."):
            for n in names or [""]:  # `from study.query import handle` imports study.query.handle
                full = f"{target}.{n}" if n and f"{target}.{n}" in GRAPH else target
                deps.add(full)
    return deps - {module}


def test_the_package_has_the_four_wings() -> None:
    assert {p.name for p in STUDY.iterdir() if p.is_dir() and (p / "__init__.py").exists()} >= {"cli", "run", "query", "stores"}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_go_one_way(module: str) -> None:
    here = wing(module)
    bad = sorted(d for d in study_deps(module) if wing(d) != here and wing(d) not in ALLOWED[here])
    assert not bad, f"{module} ({here or 'study'}) may import only {sorted(ALLOWED[here])}, imports {bad}"


def test_no_import_cycle() -> None:
    seen: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(m: str, stack: list[str]) -> None:
        seen[m] = 1
        for d in sorted(study_deps(m)):
            if d not in GRAPH:
                continue
            if seen.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(d) :], d]))
            if d not in seen:
                visit(d, [*stack, d])
        seen[m] = 2

    for m in sorted(GRAPH):
        if m not in seen:
            visit(m, [m])


@pytest.mark.parametrize(
    ("library", "allowed"),
    [
        ("mlflow", lambda m: wing(m) == "stores"),
        ("ray", lambda m: m in ("study.run.ray_executor", "study.run.remote", "study.cli.jobs")),
    ],
)
def test_mlflow_and_ray_stay_in_their_rooms(library: str, allowed: object) -> None:
    users = sorted(m for m, imps in GRAPH.items() if any(t == library or t.startswith(library + ".") for t, _ in imps))
    assert users and all(allowed(m) for m in users), f"{library} imported by {users}"  # type: ignore[operator]


def test_no_private_name_imported_across_modules() -> None:
    bad = [
        (m, t, n) for m, imps in GRAPH.items() for t, names in imps for n in names if n.startswith("_") and not n.startswith("__")
    ]
    assert not bad, bad


def test_a_ray_worker_imports_no_driver_side() -> None:
    """What Ray's workers import for a trial (`study.run.remote`: the tasks, the stop board)
    loads neither the spec (pydantic) nor Optuna, MLflow or SQLAlchemy: a cluster's worker
    processes each start without them (a third of a second of CPU each, 64 at a study's start)."""
    import subprocess
    import sys

    driver_side = ["study.spec", "study.record", "study.run.code", "optuna", "pydantic", "mlflow", "sqlalchemy"]
    code = f"import sys, study.run.remote; print([m for m in {driver_side!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_study_status_imports_no_pandas_mlflow_ray_or_torch(tmp_path: Path) -> None:
    """`study status` (and `study list`, `delete`, ...) load the command line without the query
    side's pandas (about 0.6 s of the command's 1.8-2.0 s start where it was measured), nor
    MLflow, Ray or torch: status reads Optuna's storage only."""
    import subprocess
    import sys

    heavy = ["pandas", "mlflow", "ray", "torch", "study.query.handle"]
    code = (
        "import sys\nfrom study.cli import main\n"
        f"rc = main(['status', 'no-such-study', '--storage', 'journal:{tmp_path / 'optuna.journal'}'])\n"
        f"print(rc, [m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "2 []", out.stdout + out.stderr  # 2: no such study, said in one line
