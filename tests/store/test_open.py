"""store.url in the configuration, and open_store picking and preparing the backend."""

from __future__ import annotations

import os
from pathlib import Path

import aiosqlite
import pytest

from proxy.config import (
    ConfigError,
    GatewayConfig,
    StoreConfig,
    build_config,
    load_config,
    parse_store_url,
)
from proxy.store import StoreError, open_store
from tests.store.helpers import record

REPO = Path(__file__).resolve().parents[2]


def test_default_store_is_a_sqlite_file_under_data() -> None:
    """With no store section the gateway keeps ./data/thruway.db."""
    assert GatewayConfig().store == StoreConfig(url="sqlite:///./data/thruway.db", pool_size=10)
    assert build_config({}, source="<test>").store.url == "sqlite:///./data/thruway.db"


def test_example_config_takes_the_url_from_the_environment() -> None:
    """config.example.yaml reads THRUWAY_STORE_URL and falls back to the default file."""
    url = "postgresql://gw:pw@db.internal:5432/thruway"
    example = REPO / "config.example.yaml"
    assert load_config(example, env={"THRUWAY_STORE_URL": url}).store.url == url
    assert load_config(example, env={}).store.url == "sqlite:///./data/thruway.db"


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("sqlite:///data/t.db", ("sqlite", "data/t.db")),
        ("sqlite:///./t.db", ("sqlite", "./t.db")),
        ("sqlite:////var/lib/thruway/t.db", ("sqlite", "/var/lib/thruway/t.db")),
        ("sqlite://:memory:", ("sqlite", ":memory:")),
        ("postgresql://u:p@db:5432/thruway?sslmode=require", None),
        ("postgres://db/thruway", None),
        ("postgresql:///thruway?host=/run/postgresql", None),
    ],
)
def test_accepted_store_urls(url: str, parsed: tuple[str, str] | None) -> None:
    """SQLite relative, absolute and in-memory URLs and libpq-style PostgreSQL URLs load."""
    config = build_config({"store": {"url": url}}, source="<test>")
    assert config.store.url == url
    assert parse_store_url(url) == (parsed or ("postgresql", url))


@pytest.mark.parametrize(
    "url",
    [
        "",
        "sqlite://",
        "sqlite:///",
        "sqlite:/t.db",
        "sqlite://host/t.db",
        "./data/thruway.db",
        "mysql://root:s3cret@db/thruway",
    ],
)
def test_rejected_store_urls_say_what_to_write(url: str) -> None:
    """Any other URL fails start-up naming the key and the accepted forms, never echoing it."""
    with pytest.raises(ConfigError) as info:
        build_config({"store": {"url": url}}, source="thruway.yaml")
    message = str(info.value)
    assert message.startswith("thruway.yaml: at $.store.url: expected sqlite:///relative/path")
    assert "postgresql://" in message
    assert "s3cret" not in message


def test_store_section_is_checked() -> None:
    """A pool_size under 1 and an unknown key under store are configuration errors."""
    with pytest.raises(ConfigError, match=r"at \$\.store\.pool_size: expected at least 1"):
        build_config({"store": {"pool_size": 0}}, source="<test>")
    with pytest.raises(ConfigError, match=r"\$\.store"):
        build_config({"store": {"path": "x.db"}}, source="<test>")


async def test_relative_sqlite_path_resolves_against_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative path lands under the working directory, its parent directories created."""
    monkeypatch.chdir(tmp_path)
    store = await open_store(StoreConfig(url="sqlite:///nested/dir/t.db"))
    try:
        await store.insert_response(record("resp_1"))
    finally:
        await store.close()
    assert (tmp_path / "nested" / "dir" / "t.db").is_file()


async def test_sqlite_file_is_in_wal_mode(tmp_path: Path) -> None:
    """The SQLite file is switched to write-ahead logging."""
    path = tmp_path / "t.db"
    store = await open_store(StoreConfig(url=f"sqlite:///{path}"))
    await store.close()
    async with aiosqlite.connect(path) as db:
        assert list(await db.execute_fetchall("PRAGMA journal_mode")) == [("wal",)]


async def test_in_memory_store_writes_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sqlite://:memory: is a private, working database that leaves nothing on disk."""
    monkeypatch.chdir(tmp_path)
    store = await open_store(StoreConfig(url="sqlite://:memory:"))
    try:
        await store.insert_response(record("resp_1"))
        assert await store.get_response("resp_1", "alice") is not None
    finally:
        await store.close()
    assert os.listdir(tmp_path) == []


async def test_unreachable_postgresql_names_it_without_credentials() -> None:
    """A server that does not answer fails start-up with its address and no password."""
    config = StoreConfig(url="postgresql://gw:s3cret@127.0.0.1:1/thruway?password=s3cret")
    with pytest.raises(StoreError) as info:
        await open_store(config)
    message = str(info.value)
    assert message.startswith("store: cannot use PostgreSQL at postgresql://127.0.0.1:1/thruway:")
    assert "s3cret" not in message


async def test_unusable_sqlite_file_is_a_store_error(tmp_path: Path) -> None:
    """A file that is not a database, or a path under a plain file, fails with its path."""
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not an SQLite database, not at all" * 100)
    with pytest.raises(StoreError, match=f"store: cannot use the SQLite database {garbage}: "):
        await open_store(StoreConfig(url=f"sqlite:///{garbage}"))
    under_file = garbage / "t.db"
    with pytest.raises(StoreError, match=f"store: cannot use the SQLite database {under_file}: "):
        await open_store(StoreConfig(url=f"sqlite:///{under_file}"))
