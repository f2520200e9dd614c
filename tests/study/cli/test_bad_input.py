"""Bad input, as a table: every case exits 2 with one message (no traceback) naming the field,
file or value at fault, and leaves nothing behind: the working folder is byte-for-byte as it
was (no Optuna journal or database, no ``mlflow.db``, no ``mlruns/``, no report) and Ray is
never started. Cases cover the spec, the search space, the data, the Optuna storage, the
MLflow tracking URI and the environment. They call `study.cli.main` in-process (each fails
before Ray would start); a few run the real ``study`` executable end to end."""

from __future__ import annotations

import hashlib
import importlib
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from study.cli import main

GOOD = "name: s\ndataset: {name: spirals, args: {n_samples: 200}}\nspace: optimizers\nfixed: {epochs: 2}\ntrials: 2\n"
SPACE = "name: mine\ndescription: A test space.\nfixed: {epochs: 2}\nparameters:\n  lr: {float: [1.0e-3, 0.1], log: true}\n"
LAUNCH = ("launch", "spec.yaml", "--quiet")


def bomb(levels: int = 9) -> str:
    lines = ["a0: &a0 [" + ", ".join(['"lol"'] * 9) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def spec(extra: str = "", **replace: str) -> str:
    text = GOOD
    for old, new in replace.items():
        text = text.replace(old.replace("__", " "), new)
    return text + extra


def with_space(space_text: str) -> dict[str, str]:
    return {"spec.yaml": spec(**{"space: optimizers": "space: mine.yaml"}), "mine.yaml": space_text}


def with_data(name: str, content: str | bytes | None, extra: str = "") -> dict[str, str | bytes]:
    files: dict[str, str | bytes] = {"spec.yaml": spec(extra).replace("{name: spirals, args: {n_samples: 200}}", name)}
    if content is not None:
        files[name.split(",")[0].removeprefix("{name: ")] = content
    return files


def npz(**arrays: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@dataclass(frozen=True)
class Case:
    files: dict[str, str | bytes]
    wants: tuple[str, ...]  # every one must be in the message
    argv: tuple[str, ...] = LAUNCH
    env: dict[str, str] = field(default_factory=dict)


SPEC_CASES = {
    "name missing": Case({"spec.yaml": "trials: 3\n"}, ("spec.yaml", "field name: Field required")),
    "name not allowed": Case({"spec.yaml": spec(**{"name: s": "name: a b"})}, ("field name", "'a b'")),
    "misspelt trials": Case({"spec.yaml": spec("trails: 3\n")}, ("field trails: unknown field; did you mean 'trials'?",)),
    "misspelt nested field": Case(
        {"spec.yaml": spec("sampler: {name: tpe, n_startup: 3}\n")},
        ("field sampler.n_startup", "did you mean 'n_startup_trials'"),
    ),
    "unknown field no match": Case({"spec.yaml": spec("colour: red\n")}, ("field colour: unknown field; allowed: backend",)),
    "trials zero": Case({"spec.yaml": spec(**{"trials: 2": "trials: 0"})}, ("field trials", "(got 0)")),
    "trials not a number": Case({"spec.yaml": spec(**{"trials: 2": "trials: many"})}, ("field trials", "'many'")),
    "concurrency zero": Case({"spec.yaml": spec("concurrency: 0\n")}, ("field concurrency", "(got 0)")),
    "backend unknown": Case({"spec.yaml": spec("backend: jax\n")}, ("field backend", "'jax'")),
    "cuda with numpy": Case({"spec.yaml": spec("device: cuda\n")}, ("device 'cuda' needs backend: torch",)),
    "seed negative": Case({"spec.yaml": spec("seed: -1\n")}, ("field seed", "(got -1)")),
    "seed too large": Case({"spec.yaml": spec("seed: 4294967296\n")}, ("field seed", "4294967296")),
    "objective metric": Case({"spec.yaml": spec("objective: val_f1\n")}, ("field objective.metric: unknown metric 'val_f1'",)),
    "objective direction": Case(
        {"spec.yaml": spec("objective: {metric: val_loss, direction: sideways}\n")}, ("field objective.direction", "'sideways'")
    ),
    "objective and objectives": Case(
        {"spec.yaml": spec("objective: val_acc\nobjectives: [val_loss, n_params]\n")}, ("either `objective` or `objectives`",)
    ),
    "one objective in objectives": Case({"spec.yaml": spec("objectives: [val_loss]\n")}, ("field objectives",)),
    "sampler unknown": Case({"spec.yaml": spec("sampler: annealing\n")}, ("field sampler.name", "'annealing'")),
    "grid without grid": Case({"spec.yaml": spec("sampler: grid\n")}, ("field sampler", "grid needs")),
    "population for tpe": Case({"spec.yaml": spec("sampler: {name: tpe, population_size: 8}\n")}, ("population_size",)),
    "pruner unknown": Case({"spec.yaml": spec("pruner: sometimes\n")}, ("field pruner", "'sometimes'")),
    "median not 50": Case({"spec.yaml": spec("pruner: {name: median, percentile: 30}\n")}, ("field pruner", "percentile 50")),
    "hyperband factor": Case(
        {"spec.yaml": spec("pruner: {name: hyperband, reduction_factor: 1}\n")}, ("field pruner.reduction_factor", "(got 1)")
    ),
    "patient wraps unknown": Case(
        {"spec.yaml": spec("pruner: {name: patient, wrapped: often}\n")}, ("field pruner.wrapped", "'often'")
    ),
    "cpus zero": Case({"spec.yaml": spec("resources: {cpus: 0}\n")}, ("field resources.cpus", "(got 0)")),
    "retries negative": Case({"spec.yaml": spec("retries: -1\n")}, ("field retries", "(got -1)")),
    "timeout zero": Case({"spec.yaml": spec("timeout: 0\n")}, ("field timeout", "(got 0)")),
    "fixed bad value": Case({"spec.yaml": spec(**{"{epochs: 2}": "{epochs: 0}"})}, ("field fixed", "epochs")),
    "fixed misspelt field": Case(
        {"spec.yaml": spec(**{"{epochs: 2}": "{epoch: 2}"})}, ("field fixed", "['epoch']", "did you mean 'epochs'")
    ),
    "enqueue not drawn": Case(
        {"spec.yaml": spec("enqueue: [{optimizer: adam, lr_adaptive: 0.001, momentum: 0.9}]\n")},
        ("field enqueue[0]", "['momentum']"),
    ),
    "enqueue bad choice": Case({"spec.yaml": spec("enqueue: [{optimizer: rmsprop_typo}]\n")}, ("field enqueue[0]",)),
    "grid incomplete": Case(
        {"spec.yaml": spec("sampler: {name: grid, grid: {optimizer: [sgd, adam]}}\n")}, ("field sampler.grid",)
    ),
    "not a mapping": Case({"spec.yaml": "- name: s\n"}, ("spec.yaml", "must be a mapping")),
    "empty file": Case({"spec.yaml": ""}, ("spec.yaml", "must be a mapping", "NoneType")),
    "invalid yaml": Case({"spec.yaml": "name: [unclosed\n"}, ("spec.yaml", "not valid YAML")),
    "python tag": Case({"spec.yaml": "name: !!python/object/apply:os.system ['true']\n"}, ("spec.yaml", "not valid YAML")),
    "yaml bomb": Case({"spec.yaml": bomb() + "name: *a9\n"}, ("spec.yaml", "expands to more than 100000 values")),
    "recursive alias": Case({"spec.yaml": "name: &n [*n]\n"}, ("spec.yaml", "refers to a value that contains it")),
    "deep nesting": Case({"spec.yaml": "name: s\nfixed: " + "[" * 200 + "]" * 200 + "\n"}, ("spec.yaml", "nested")),
    "not utf-8": Case({"spec.yaml": b"name: s\xff\xfe\n"}, ("spec.yaml", "not UTF-8")),
    "spec file missing": Case({}, ("spec file 'spec.yaml' does not exist",)),
    "spec is a folder": Case({"spec.yaml/keep": ""}, ("spec 'spec.yaml' is a directory",)),
}

SPACE_CASES = {
    "space unknown name": Case(
        {"spec.yaml": spec(**{"space: optimizers": "space: optimisers"})}, ("field space", "did you mean 'optimizers'")
    ),
    "space file missing": Case(
        {"spec.yaml": spec(**{"space: optimizers": "space: nope.yaml"})}, ("field space", "nope.yaml: no such file")
    ),
    "space module missing": Case(
        {"spec.yaml": spec(**{"space: optimizers": "space: nomodule_xyz:func"})},
        ("field space", "cannot import module 'nomodule_xyz'"),
    ),
    "space module raises": Case(
        {
            "spec.yaml": spec(**{"space: optimizers": "space: broken_space_mod:fn"}),
            "broken_space_mod.py": "raise RuntimeError('boom')\n",
        },
        ("field space", "importing module 'broken_space_mod' failed", "boom"),
    ),
    "space function unknown field": Case(
        {
            "spec.yaml": spec(**{"space: optimizers": "space: typo_space_mod:fn"}),
            "typo_space_mod.py": "def fn(trial):\n    return {'learning_rate': 0.1}\n",
        },
        ("typo_space_mod:fn", "unknown field(s) ['learning_rate']"),
    ),
    "space top key misspelt": Case(
        with_space(SPACE.replace("parameters:", "params:")), ("mine.yaml", "['params']", "did you mean 'parameters'")
    ),
    "space name not a word": Case(
        with_space(SPACE.replace("name: mine", "name: my space")), ("mine.yaml", "name must be a word")
    ),
    "space description missing": Case(
        with_space(SPACE.replace("description: A test space.\n", "")), ("mine.yaml", "description must be")
    ),
    "space inverted range": Case(
        with_space(SPACE.replace("[1.0e-3, 0.1]", "[0.1, 1.0e-3]")), ("mine.yaml", "parameter 'lr'", "inverted range")
    ),
    "space log range at zero": Case(
        with_space(SPACE.replace("[1.0e-3, 0.1]", "[0, 0.1]")), ("mine.yaml", "parameter 'lr'", "includes 0")
    ),
    "space kind misspelt": Case(
        with_space(SPACE.replace("{float:", "{flaot:")), ("mine.yaml", "parameter 'lr'", "did you mean 'float'")
    ),
    "space key misspelt": Case(
        with_space(SPACE.replace("log: true", "lgo: true")), ("mine.yaml", "parameter 'lr'", "['lgo']", "did you mean 'log'")
    ),
    "space field misspelt": Case(
        with_space(SPACE + "  dropuot: {float: [0.0, 0.5]}\n"), ("mine.yaml", "parameter 'dropuot'", "did you mean 'dropout'")
    ),
    "space condition misspelt": Case(
        with_space(
            SPACE + "  optimizer: {choices: [sgd, momentum]}\n  momentum: {float: [0.5, 0.9], when: {optimiser: momentum}}\n"
        ),
        ("mine.yaml", "parameter 'momentum'", "'optimiser'", "did you mean 'optimizer'"),
    ),
    "space empty choices": Case(with_space(SPACE + "  optimizer: {choices: []}\n"), ("mine.yaml", "parameter 'optimizer'")),
    "space fixed bad value": Case(
        with_space(SPACE.replace("{epochs: 2}", "{epochs: 2, dropout: 1.5}")), ("mine.yaml", "dropout=1.5")
    ),
    "space fixed misspelt": Case(
        with_space(SPACE.replace("{epochs: 2}", "{epochs: 2, dropuot: 0.1}")),
        ("mine.yaml", "'dropuot'", "did you mean 'dropout'"),
    ),
    "space budget bad": Case(with_space(SPACE + "  width: {budget: -5}\n"), ("mine.yaml", "parameter 'width'", "budget")),
    "space yaml bomb": Case(
        with_space("name: mine\ndescription: x\nfixed:\n  " + bomb().replace("\n", "\n  ")), ("mine.yaml", "expands to more than")
    ),
    "space invalid yaml": Case(with_space("name: [mine\n"), ("mine.yaml", "not valid YAML")),
}

DATA_CASES = {
    "dataset unknown": Case(with_data("imagenet", None), ("field dataset", "'imagenet' is neither")),
    "dataset file missing": Case(with_data("gone.csv", None), ("field dataset", "gone.csv", "does not exist")),
    "csv without label column": Case(
        with_data("d.csv", "a,b\n1,2\n3,4\n"), ("field dataset", "d.csv", "no label column 'label'")
    ),
    "csv text feature": Case(
        with_data("d.csv", "a,b,label\n1,x,0\n2,y,1\n3,z,0\n4,w,1\n"), ("field dataset", "d.csv", "['b']", "not numeric")
    ),
    "csv missing values": Case(
        with_data("d.csv", "a,b,label\n1,2,0\n,3,1\n4,5,0\n6,7,1\n"), ("field dataset", "d.csv", "NaN or inf")
    ),
    "npz object arrays": Case(
        with_data("d.npz", npz(X=np.array([[1, 2]], dtype=object), y=np.array([0]))),
        ("field dataset", "d.npz", "cannot load without pickle"),
    ),
    "npz without y": Case(with_data("d.npz", npz(X=np.zeros((10, 2)))), ("field dataset", "d.npz", "missing array(s) ['y']")),
    "npz not an npz": Case(
        with_data("d.npz", b"not a zip file"), ("field dataset", "d.npz", "not a readable .npz file (not a zip archive")
    ),
    "unknown file type": Case(with_data("d.xlsx", b"PK"), ("field dataset", "'d.xlsx'", "nor a file (.npz, .csv, .parquet)")),
    "generator argument": Case(
        {"spec.yaml": spec(**{"args: {n_samples: 200}": "args: {n_rows: 200}"})}, ("field dataset", "bad generator argument")
    ),
    "split fractions": Case(
        {"spec.yaml": spec().replace("{name: spirals, args: {n_samples: 200}}", "{name: digits, val: 0.6, test: 0.5}")},
        ("field dataset", "val + test < 1", "val=0.6, test=0.5"),
    ),
    "val out of range": Case(
        {"spec.yaml": spec().replace("{name: spirals, args: {n_samples: 200}}", "{name: digits, val: 1.5}")},
        ("field dataset.val", "(got 1.5)"),
    ),
}

STORAGE_CASES = {
    "storage unknown kind": Case(
        {"spec.yaml": spec("storage: redis://localhost/0\n")}, ("storage 'redis://localhost/0'", "unknown kind")
    ),
    "storage folder missing": Case(
        {"spec.yaml": spec("storage: sqlite:////no/such/dir/o.db\n")}, ("storage 'sqlite:////no/such/dir/o.db'", "does not exist")
    ),
    "journal folder missing": Case(
        {"spec.yaml": spec("storage: journal:nodir/o.journal\n")}, ("storage 'journal:nodir/o.journal'", "does not exist")
    ),
    "storage is a folder": Case(
        {"spec.yaml": spec("storage: adir.db\n"), "adir.db/keep": ""}, ("storage 'sqlite:///adir.db'", "is a directory")
    ),
    "storage not sqlite": Case(
        {"spec.yaml": spec("storage: notes.db\n"), "notes.db": "just text\n"},
        ("storage 'sqlite:///notes.db'", "is not an SQLite database"),
    ),
    "storage in memory": Case(
        {"spec.yaml": spec("storage: 'sqlite:///:memory:'\n")}, ("storage 'sqlite:///:memory:'", "in-memory")
    ),
    "postgres refused": Case(
        {"spec.yaml": spec("storage: postgresql://me:hunter2@127.0.0.1:1/optuna\n")},
        ("storage 'postgresql://me:***@127.0.0.1:1/optuna'", "cannot connect"),
    ),
}

TRACKING_CASES = {
    "tracking unknown kind": Case(
        {"spec.yaml": spec("tracking_uri: s3://bucket\n")}, ("tracking_uri 's3://bucket'", "unknown kind")
    ),
    "tracking server down": Case(
        {"spec.yaml": spec("tracking_uri: http://127.0.0.1:1\n")}, ("tracking_uri 'http://127.0.0.1:1'", "not reachable")
    ),
    "tracking folder missing": Case(
        {"spec.yaml": spec("tracking_uri: sqlite:////no/such/dir/m.db\n")},
        ("tracking_uri 'sqlite:////no/such/dir/m.db'", "does not exist"),
    ),
    "tracking is a folder": Case(
        {"spec.yaml": spec("tracking_uri: sqlite:///adir\n"), "adir/keep": ""},
        ("tracking_uri 'sqlite:///adir'", "is a directory"),
    ),
    "tracking not sqlite": Case(
        {"spec.yaml": spec("tracking_uri: sqlite:///notes.db\n"), "notes.db": "just text\n"},
        ("tracking_uri 'sqlite:///notes.db'", "is not an SQLite database"),
    ),
    "tracking in memory": Case(
        {"spec.yaml": spec("tracking_uri: 'sqlite:///:memory:'\n")}, ("tracking_uri", "needs a file path")
    ),
    "tracking file folder missing": Case(
        {"spec.yaml": spec("tracking_uri: file:///no/such/dir/mlruns\n")},
        ("tracking_uri 'file:///no/such/dir/mlruns'", "does not exist"),
    ),
    "tracking postgres refused": Case(
        {"spec.yaml": spec("tracking_uri: postgresql://me:hunter2@127.0.0.1:1/mlflow\n")},
        ("tracking_uri 'postgresql://me:***@127.0.0.1:1/mlflow'", "cannot connect"),
    ),
}

ENV = "environment variable"
ENV_CASES = {
    "env storage unknown kind": Case(
        {"spec.yaml": GOOD}, (f"{ENV} HPSTUDY_STORAGE", "redis://x/0", "unknown kind"), env={"HPSTUDY_STORAGE": "redis://x/0"}
    ),
    "env storage folder missing": Case(
        {"spec.yaml": GOOD},
        (f"{ENV} HPSTUDY_STORAGE", "/no/dir/o.journal", "does not exist"),
        env={"HPSTUDY_STORAGE": "/no/dir/o.journal"},
    ),
    "env storage password masked": Case(
        {"spec.yaml": GOOD},
        (f"{ENV} HPSTUDY_STORAGE", "postgresql://me:***@127.0.0.1:1/optuna", "cannot connect"),
        env={"HPSTUDY_STORAGE": "postgresql://me:hunter2@127.0.0.1:1/optuna"},
    ),
    "env tracking unknown kind": Case(
        {"spec.yaml": GOOD},
        (f"{ENV} MLFLOW_TRACKING_URI", "s3://bucket", "unknown kind"),
        env={"MLFLOW_TRACKING_URI": "s3://bucket"},
    ),
    "env tracking folder missing": Case(
        {"spec.yaml": GOOD},
        (f"{ENV} MLFLOW_TRACKING_URI", "sqlite:////no/dir/m.db", "does not exist"),
        env={"MLFLOW_TRACKING_URI": "sqlite:////no/dir/m.db"},
    ),
    "env storage for status": Case(
        {}, (f"{ENV} HPSTUDY_STORAGE", "/no/dir/o.journal"), argv=("status", "s"), env={"HPSTUDY_STORAGE": "/no/dir/o.journal"}
    ),
    "env storage for best": Case(
        {}, (f"{ENV} HPSTUDY_STORAGE", "redis://x/0"), argv=("best", "s"), env={"HPSTUDY_STORAGE": "redis://x/0"}
    ),
    "env storage for report": Case(
        {},
        (f"{ENV} HPSTUDY_STORAGE", "gone.journal", "no such file"),
        argv=("report", "s"),
        env={"HPSTUDY_STORAGE": "gone.journal"},
    ),
    "env storage for resume": Case(
        {}, (f"{ENV} HPSTUDY_STORAGE", "gone.journal"), argv=("resume", "s", "--quiet"), env={"HPSTUDY_STORAGE": "gone.journal"}
    ),
    "env storage for list": Case(
        {}, (f"{ENV} HPSTUDY_STORAGE", "redis://x/0"), argv=("list",), env={"HPSTUDY_STORAGE": "redis://x/0"}
    ),
    "env storage for delete": Case(
        {}, (f"{ENV} HPSTUDY_STORAGE", "gone.journal"), argv=("delete", "s", "--yes"), env={"HPSTUDY_STORAGE": "gone.journal"}
    ),
    "flag wins over env": Case(
        {"spec.yaml": GOOD},
        ("storage 'redis://flag/0'", "unknown kind"),
        argv=(*LAUNCH, "--storage", "redis://flag/0"),
        env={"HPSTUDY_STORAGE": "/tmp/fine.journal"},
    ),
}

OTHER_CASES = {
    "trials flag zero": Case({"spec.yaml": GOOD}, ("field trials", "(got 0)"), argv=(*LAUNCH, "--trials", "0")),
    "status of a missing study": Case({}, ("no such file", ".hpstudy/optuna.journal"), argv=("status", "nope")),
    "resume of a missing study": Case({}, ("no such file",), argv=("resume", "nope", "--quiet")),
    "delete of a missing storage": Case({}, ("no such file",), argv=("delete", "nope", "--yes")),
    "space show unknown": Case(
        {}, ("unknown search space 'optimisers'", "did you mean 'optimizers'"), argv=("space", "show", "optimisers")
    ),
    "best k zero": Case({}, ("-k must be >= 1",), argv=("best", "s", "-k", "0")),
}

GROUPS = {
    "spec": SPEC_CASES,
    "space": SPACE_CASES,
    "data": DATA_CASES,
    "storage": STORAGE_CASES,
    "tracking": TRACKING_CASES,
    "env": ENV_CASES,
    "other": OTHER_CASES,
}
CASES = {f"{group}: {name}": case for group, cases in GROUPS.items() for name, case in cases.items()}


def test_the_table_is_large_and_covers_every_kind_of_input() -> None:
    assert len(CASES) >= 60
    assert all(len(GROUPS[g]) >= 5 for g in ("spec", "space", "data", "storage", "tracking", "env"))


def _write(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under `root` with a hash of its bytes."""
    out = {}
    for p in sorted(root.rglob("*")):
        if "__pycache__" in p.parts:
            continue
        out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    """Starting Ray fails the test."""

    def never(address: str | None):
        def start(prep: object):
            pytest.fail("Ray was started for bad input")

        return start

    monkeypatch.setattr(importlib.import_module("study.run.launch"), "ray_executor", never)


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_bad_input_exits_2_names_the_problem_and_writes_nothing(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_ray: None
) -> None:
    monkeypatch.chdir(tmp_path)
    for var in ("HPSTUDY_STORAGE", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    for var, value in case.env.items():
        monkeypatch.setenv(var, value)
    monkeypatch.syspath_prepend(str(tmp_path))  # module:function spaces in the working folder
    _write(tmp_path, case.files)
    before = snapshot(tmp_path)
    code = main(list(case.argv))
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert err.startswith("error: ") and err.count("error: ") == 1, err
    assert "Traceback" not in err and "hunter2" not in err + out
    for want in case.wants:
        assert want in err, f"{want!r} not in {err!r}"
    assert snapshot(tmp_path) == before  # nothing written: no storage, no mlflow.db, no mlruns/
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized()
    for mod in ("broken_space_mod", "typo_space_mod"):
        sys.modules.pop(mod, None)


# -- end to end, through the installed `study` executable ---------------------------------------
E2E = {
    "spec: misspelt trials": CASES["spec: misspelt trials"],
    "spec: yaml bomb": CASES["spec: yaml bomb"],
    "space: space yaml bomb": CASES["space: space yaml bomb"],
    "env: env storage unknown kind": CASES["env: env storage unknown kind"],
    "env: env storage for status": CASES["env: env storage for status"],
    "storage: postgres refused": CASES["storage: postgres refused"],
}


def _limit_memory() -> None:  # a YAML bomb that got through would be killed, not swap the machine
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


@pytest.mark.parametrize("case", list(E2E.values()), ids=list(E2E))
def test_the_study_executable_exits_2_with_one_line(case: Case, tmp_path: Path, study_cli: str) -> None:
    _write(tmp_path, case.files)
    before = snapshot(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("HPSTUDY_STORAGE", "MLFLOW_TRACKING_URI")}
    t0 = time.monotonic()
    p = subprocess.run(
        [study_cli, *case.argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, **case.env},
        preexec_fn=_limit_memory,
    )
    elapsed = time.monotonic() - t0
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in p.stderr, p.stderr
    assert all(w in lines[0] for w in case.wants), lines[0]
    assert snapshot(tmp_path) == before
    assert elapsed < 60, elapsed  # the interpreter and imports on a loaded machine; a bomb would not finish at all


def test_a_yaml_bomb_is_refused_in_well_under_a_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_ray: None
) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, CASES["spec: yaml bomb"].files)
    main(["spaces"])  # imports done before timing
    capsys.readouterr()
    t0 = time.perf_counter()
    assert main(list(LAUNCH)) == 2
    assert time.perf_counter() - t0 < 0.5
    assert "expands to more than" in capsys.readouterr().err
