"""Packet-filter state: reading it (iptables, ip6tables, ipset, nft) and undoing what the
real node added, by comparing with the state recorded before it started.

kube-proxy, kube-router, the kubelet and the launcher's own guard rules write into the
host's tables. Stopping them does not remove everything (``kube-proxy --cleanup`` leaves
``KUBE-FIREWALL``, kube-router leaves ipsets), so the launcher removes, relative to the
baseline: new chains named ``KUBE-*``/``PROMETHIOS-*``, new rules that jump to such
chains or name the node's bridge, new ipsets of kube-router, and nft tables that
iptables-nft created and that are empty again. Anything else is left alone, so a rule
another program adds meanwhile is never touched.
"""

from __future__ import annotations

import itertools
import re
import shlex
import subprocess
from collections import Counter
from dataclasses import dataclass, field

from .settings import BRIDGE

BUILTIN_CHAINS = {"INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"}
OUR_CHAIN = re.compile(r"^(KUBE-|PROMETHIOS-)")
OUR_IPSET = re.compile(r"^(inet6:)?(KUBE-|TMP-|kube-router)")
IPTABLES_TABLES = {"filter", "nat", "mangle", "raw", "security"}
#: nft tables the node's components may create (iptables-nft's, and kube-proxy's probe).
REMOVABLE_NFT_TABLES = IPTABLES_TABLES | {"kube-proxy"}
FAMILIES = {"ipv4": "iptables", "ipv6": "ip6tables"}
COUNTERS = re.compile(r"\s*\[\d+:\d+\]$")


@dataclass
class Table:
    """One table of ``iptables-save``: chain policies and rules (``-A ...`` lines)."""

    chains: dict[str, str] = field(default_factory=dict)
    rules: list[str] = field(default_factory=list)


def parse_save(text: str) -> dict[str, Table]:
    """Parse ``iptables-save`` output (counters dropped) into tables."""
    tables: dict[str, Table] = {}
    current: Table | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith("*"):
            current = tables.setdefault(line[1:], Table())
        elif current is not None and line.startswith(":"):
            name, _, rest = line[1:].partition(" ")
            current.chains[name] = COUNTERS.sub("", rest).strip()
        elif current is not None and line.startswith("-A "):
            current.rules.append(line)
    return tables


def normalise_save(text: str) -> str:
    """``iptables-save`` without comments and counters, for before/after comparison."""
    lines = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            lines.append(COUNTERS.sub("", line) if line.startswith(":") else line)
    return "\n".join(lines)


def _rule_chain(rule: str) -> str:
    return rule.split()[1]


def _rule_is_ours(rule: str) -> bool:
    words = shlex.split(rule)
    for flag, value in itertools.pairwise(words):
        if flag in ("-j", "-g", "--jump", "--goto") and OUR_CHAIN.match(value):
            return True
        if flag in ("-i", "-o", "--in-interface", "--out-interface") and value == BRIDGE:
            return True
    return False


def cleanup_commands(before: dict[str, Table], after: dict[str, Table]) -> list[list[str]]:
    """Arguments (after ``iptables``) that remove what the node added since ``before``."""
    commands: list[list[str]] = []
    for name, table in after.items():
        old = before.get(name, Table())
        new_chains = [c for c in table.chains if c not in old.chains and OUR_CHAIN.match(c)]
        added = Counter(table.rules) - Counter(old.rules)
        for rule, count in added.items():
            if _rule_chain(rule) in new_chains or not _rule_is_ours(rule):
                continue
            delete = ["-t", name, "-D", *shlex.split(rule)[1:]]
            commands.extend([delete] * count)
        commands.extend(["-t", name, "-F", chain] for chain in new_chains)
        commands.extend(["-t", name, "-X", chain] for chain in new_chains)
        for chain, policy in old.chains.items():
            now = table.chains.get(chain)
            if chain in BUILTIN_CHAINS and now is not None and now != policy:
                commands.append(["-t", name, "-P", chain, policy.split()[0]])
    return commands


def run(argv: list[str], check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run a packet-filter tool; text output captured."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=check)


def save(family: str) -> str:
    """``iptables-save`` (or ``ip6tables-save``) output; empty if the tool is missing."""
    try:
        return run([f"{FAMILIES[family]}-save"]).stdout
    except FileNotFoundError:
        return ""


def ipset_names() -> list[str]:
    try:
        return sorted(run(["ipset", "list", "-n"]).stdout.split())
    except FileNotFoundError:
        return []


def nft_tables() -> list[str]:
    """``family name`` of every nft table."""
    try:
        out = run(["nft", "list", "tables"]).stdout
    except FileNotFoundError:
        return []
    return sorted(line.removeprefix("table ").strip() for line in out.splitlines() if line)


def nft_ruleset() -> str:
    try:
        return run(["nft", "list", "ruleset"]).stdout
    except FileNotFoundError:
        return ""


@dataclass(frozen=True)
class FilterState:
    """What :func:`remove_added` compares against (JSON-serialisable via ``as_dict``)."""

    saves: dict[str, str]
    ipsets: list[str]
    nft_tables: list[str]

    @classmethod
    def capture(cls) -> FilterState:
        return cls({f: save(f) for f in FAMILIES}, ipset_names(), nft_tables())

    def as_dict(self) -> dict[str, object]:
        return {"saves": self.saves, "ipsets": self.ipsets, "nft_tables": self.nft_tables}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> FilterState:
        saves = data.get("saves") or {}
        ipsets = data.get("ipsets") or []
        tables = data.get("nft_tables") or []
        assert isinstance(saves, dict) and isinstance(ipsets, list) and isinstance(tables, list)
        return cls({str(k): str(v) for k, v in saves.items()}, [str(i) for i in ipsets],
                   [str(t) for t in tables])  # fmt: skip


def _nft_table_is_empty(family_and_name: str) -> bool:
    listing = run(["nft", "list", "table", *family_and_name.split()]).stdout
    body = [line.strip() for line in listing.splitlines()[1:]]
    builtin_heads = {f"chain {chain} {{" for chain in BUILTIN_CHAINS}
    meaningful = [
        line
        for line in body
        if line and line != "}" and line not in builtin_heads and not line.startswith("type ")
    ]
    return not meaningful


def remove_added(before: FilterState) -> list[str]:
    """Remove the rules, chains, ipsets and empty nft tables added since ``before``.

    Returns a description of every failed removal (empty when all went well).
    """
    failures: list[str] = []
    for family, tool in FAMILIES.items():
        for args in cleanup_commands(parse_save(before.saves.get(family, "")),
                                     parse_save(save(family))):  # fmt: skip
            result = run([tool, "-w", *args])
            if result.returncode != 0:
                failures.append(f"{tool} {shlex.join(args)}: {result.stderr.strip()}")
    for name in ipset_names():
        if name not in before.ipsets and OUR_IPSET.match(name):
            result = run(["ipset", "destroy", name])
            if result.returncode != 0:
                failures.append(f"ipset destroy {name}: {result.stderr.strip()}")
    for table in nft_tables():
        family, _, name = table.partition(" ")
        if table in before.nft_tables or name not in REMOVABLE_NFT_TABLES:
            continue
        if name == "kube-proxy" or _nft_table_is_empty(table):
            result = run(["nft", "delete", "table", family, name])
            if result.returncode != 0:
                failures.append(f"nft delete table {table}: {result.stderr.strip()}")
    return failures
