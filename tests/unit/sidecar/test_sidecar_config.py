"""Loading and hot-reloading the mounted config and secret files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from promethios.sidecar.config import ConfigStore, Snapshot, load_config


def write_config(tmp_path: Path, **overrides: Any) -> Path:
    (tmp_path / "api-key").write_text("key-1\n")
    (tmp_path / "provider").write_text("cred-1")
    config = {
        "agentId": "ns/agent",
        "governanceIdentity": "gid-1",
        "policyName": "p",
        "provider": {
            "type": "openai",
            "baseUrl": "http://up/v1",
            "credentialFile": str(tmp_path / "provider"),
        },
        "ingest": {"url": "http://ingest", "apiKeyFile": str(tmp_path / "api-key")},
        "spoolDir": str(tmp_path / "spool"),
        **overrides,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def bump(path: Path, text: str) -> None:
    path.write_text(text)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_load_reads_secrets(tmp_path: Path) -> None:
    store = ConfigStore(write_config(tmp_path))
    assert store.current.api_key == "key-1"
    assert store.current.provider_credential == "cred-1"
    assert store.config.agent_id == "ns/agent"


def test_invalid_config_at_start_raises(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"agentId": "x"}')
    with pytest.raises(ValidationError):
        load_config(path)


def test_poll_without_changes_does_nothing(tmp_path: Path) -> None:
    store = ConfigStore(write_config(tmp_path))
    assert not store.poll()


def test_poll_picks_up_key_rotation(tmp_path: Path) -> None:
    changes: list[tuple[Snapshot, Snapshot]] = []
    store = ConfigStore(write_config(tmp_path), on_change=lambda o, n: changes.append((o, n)))
    bump(tmp_path / "api-key", "key-2")
    assert store.poll()
    assert store.current.api_key == "key-2"
    assert changes and changes[0][0].api_key == "key-1"


def test_poll_picks_up_policy_change(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    store = ConfigStore(path)
    data = json.loads(path.read_text())
    data["mode"] = "audit"
    bump(path, json.dumps(data))
    assert store.poll()
    assert store.config.mode == "audit"


def test_invalid_reload_keeps_previous_config(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    store = ConfigStore(path)
    bump(path, "{broken")
    store.poll()
    assert store.config.agent_id == "ns/agent"
    assert store.reload_errors == 1
    assert not store.poll()  # the same broken file is not re-parsed every poll


def test_reread_api_key(tmp_path: Path) -> None:
    store = ConfigStore(write_config(tmp_path))
    assert not store.reread_api_key()
    (tmp_path / "api-key").write_text("key-3")
    assert store.reread_api_key()
    assert store.current.api_key == "key-3"


def test_missing_secret_is_none(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    (tmp_path / "provider").unlink()
    assert ConfigStore(path).current.provider_credential is None
