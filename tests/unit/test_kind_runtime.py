"""The kind session's runc wrapper: which capabilities it drops, and where it finds the bundle."""

from __future__ import annotations

import json
from pathlib import Path

from promethios_local.kind.runtime import (
    bounding_set,
    bundle_of,
    process_file,
    restrict_capabilities,
)

#: This machine's bounding set: every capability up to CHECKPOINT_RESTORE (40) but SYS_RESOURCE.
STATUS_WITHOUT_SYS_RESOURCE = "Name:\trunc\nCapBnd:\t000001fffeffffff\n"


def test_bounding_set_reads_the_mask_by_capability_number() -> None:
    caps = bounding_set(STATUS_WITHOUT_SYS_RESOURCE)
    assert "CAP_SYS_RESOURCE" not in caps
    assert {"CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_CHECKPOINT_RESTORE"} <= caps
    assert len(caps) == 40


def test_restrict_drops_only_what_the_bounding_set_lacks_from_every_set() -> None:
    names = ["CAP_SYS_ADMIN", "CAP_SYS_RESOURCE", "CAP_NET_RAW"]
    config: dict[str, object] = {
        "process": {
            "capabilities": {k: list(names) for k in ("bounding", "effective", "permitted")}
        }
    }
    dropped = restrict_capabilities(config["process"], bounding_set(STATUS_WITHOUT_SYS_RESOURCE))
    assert dropped == ["CAP_SYS_RESOURCE"]
    process = config["process"]
    assert isinstance(process, dict)
    for kept in process["capabilities"].values():
        assert kept == ["CAP_SYS_ADMIN", "CAP_NET_RAW"]


def test_restrict_leaves_a_config_without_capabilities_alone() -> None:
    config: dict[str, object] = {"process": {"args": ["sh"]}}
    assert restrict_capabilities(config["process"], set()) == []
    assert config == {"process": {"args": ["sh"]}}


def test_bundle_is_found_only_for_create_and_run(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({}))
    create = ["--root", "/r", "create", "--bundle", str(tmp_path), "--pid-file", "p", "id1"]
    assert bundle_of(create) == tmp_path
    assert bundle_of(["run", f"--bundle={tmp_path}", "id2"]) == tmp_path
    assert bundle_of(["--root", "/r", "start", "id1"]) is None
    assert bundle_of(["delete", "--force", "id1"]) is None


def test_exec_process_file_is_found_only_for_exec() -> None:
    argv = ["--root", "/r", "exec", "--process", "/tmp/p.json", "--detach", "id1"]
    assert process_file(argv) == Path("/tmp/p.json")
    assert process_file(["exec", "--process=/tmp/q.json", "id1"]) == Path("/tmp/q.json")
    assert process_file(["create", "--bundle", "/b", "id1"]) is None
