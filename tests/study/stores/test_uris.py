"""Storage URLs and tracking URIs: resolved, masked, checked without creating anything."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from study.spec import SpecError
from study.stores import uris


def test_resolve_and_mask() -> None:
    assert uris.resolve(None) == uris.DEFAULT_STORAGE == "journal:.hpstudy/optuna.journal"
    assert uris.resolve("runs/s.journal") == "journal:runs/s.journal"
    assert uris.resolve("s.db") == "sqlite:///s.db"
    assert uris.resolve("postgresql://u:pw@h/db").endswith("://u:pw@h/db")
    assert uris.mask("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert uris.mask("sqlite:///x.db") == "sqlite:///x.db"


def test_storage_check_creates_nothing(tmp_path: Path) -> None:
    os.chdir(tmp_path)
    assert uris.check_storage(None) == uris.DEFAULT_STORAGE
    assert uris.check_storage(f"sqlite:///{tmp_path / 'o.db'}")
    assert uris.check_storage(f"journal:{tmp_path / 'o.journal'}")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("journal:/no/such/folder/x.journal", "does not exist"),
        ("sqlite:////no/such/folder/x.db", "does not exist"),
        ("sqlite:///:memory:", "needs a file path"),
        ("redis://localhost/0", "unknown kind of URL"),
        ("postgresql://u:secret@127.0.0.1:1/db", "cannot connect"),
    ],
)
def test_bad_storage_url(url: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as info:
        uris.check_storage(url)
    assert "secret" not in str(info.value)


def test_storage_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("hello")
    with pytest.raises(SpecError, match="not an SQLite database"):
        uris.check_storage(f"sqlite:///{tmp_path / 'notes.db'}")
    with pytest.raises(SpecError, match="is a directory"):
        uris.check_storage(f"journal:{tmp_path}")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("sqlite:////no/such/folder/mlflow.db", "does not exist"),
        ("http://127.0.0.1:1", "not reachable"),
        ("databricks", "unknown kind of URI"),
        ("s3://bucket/x", "unknown kind of URI"),
    ],
)
def test_bad_tracking_uri(uri: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        uris.check_tracking(uri)


@pytest.mark.parametrize(
    "url", ["sqlite:////proc/x.db", "journal:/proc/x.journal", "/proc/x.db", "/proc/optuna.journal", "journal:///proc/x.journal"]
)
def test_storage_in_a_folder_that_takes_no_files_is_refused(url: str) -> None:
    with pytest.raises(SpecError, match="cannot create a file in folder '/proc'") as info:
        uris.check_storage(url)
    assert str(info.value).startswith("storage ")


@pytest.mark.parametrize("uri", ["sqlite:////proc/mlflow.db", "file:///proc/mlruns", "file:/proc/mlruns"])
def test_tracking_in_a_folder_that_takes_no_files_is_refused(uri: str) -> None:
    with pytest.raises(SpecError, match="tracking_uri .*cannot create a file in folder '/proc'"):
        uris.check_tracking(uri)


def test_the_default_storage_needs_a_writable_working_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/proc")  # .hpstudy/ would be created here
    with pytest.raises(SpecError, match="cannot create a file in folder '/proc'"):
        uris.check_storage(None)
    monkeypatch.chdir(tmp_path)
    assert uris.check_storage(None) == uris.DEFAULT_STORAGE and os.listdir(tmp_path) == []  # the probe left nothing


def test_artifacts_of_a_sqlite_store_go_next_to_it(tmp_path: Path) -> None:
    assert uris.artifact_root(f"sqlite:///{tmp_path / 'm.db'}") == (tmp_path / "mlartifacts").as_uri()
    assert uris.artifact_root("http://127.0.0.1:5000") is None and uris.artifact_root("file:///x") is None
