"""Benchmark: the sidecar's peak RSS on the worst bodies an agent can send it.

Run: ``python benchmarks/bench_sidecar_memory.py [--json]``

For each attack a fresh ``promethios sidecar`` (default limits, the benchmark
policy of ``bench_sidecar.py``: two blocked patterns, PII redaction) runs in its
own process beside the fake upstream; the attack's bodies are sent, and the
process's RSS high-water mark (``VmHWM``) is read at idle and after; the table
gives the statuses the agent got and the peak. Attacks:

- a node bomb: 4 MB of ``{}`` (a million dicts once parsed);
- a depth bomb: 100 000 nested ``[``;
- one 8 MB string of non-BMP text holding an e-mail address (redacted);
- one 8 MB string of ``\\u0041`` escapes holding an escaped e-mail address;
- eight of those 8 MB strings at once.

The script uses no sidecar code, so it measures an older checkout the same way
(run it with ``PYTHONPATH`` pointing at that checkout's ``operator/``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from bench_sidecar import ROOT, free_port, start, wait_ready, write_config

RESULTS = ROOT / "benchmarks" / "results" / "sidecar_memory.json"
MiB = 1 << 20
CHAT: dict[str, Any] = {"model": "gpt-bench", "messages": [{"role": "user", "content": "hi"}]}
BODY_BYTES = 8 * MiB - 4096


def bodies() -> dict[str, list[bytes]]:
    """Each attack: the bodies sent together."""
    astral = "\U0001f600" + "a" * (BODY_BYTES - 200) + " jane.doe@example.com"
    escaped = "\\u0041" * ((BODY_BYTES - 200) // 7) + "jane\\u0040example.com"
    one_astral = json.dumps({**CHAT, "x": astral}).encode()
    return {
        "node bomb, 4 MB of {}": [json.dumps({**CHAT, "x": [{}] * 1_000_000}).encode()],
        "depth bomb, 100k [": [b'{"model": "m", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"],
        "8 MB non-BMP string + e-mail": [one_astral],
        "8 MB escaped string + e-mail": [json.dumps({**CHAT, "x": escaped}).encode()],
        "8 x 8 MB non-BMP strings at once": [one_astral] * 8,
    }


def high_water_mib(pid: int) -> float:
    """The process's peak resident set size so far (``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM in /proc status")


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> int:
    headers = {"Content-Type": "application/json"}
    async with session.post(url, data=body, headers=headers) as response:
        await response.read()
        return response.status


async def attack(pid: int, proxy_port: int, metrics_port: int, sent: list[bytes]) -> dict[str, Any]:
    """Send one attack's bodies at once; the statuses and the RSS high-water marks."""
    await wait_ready(f"http://127.0.0.1:{metrics_port}/healthz")
    await asyncio.sleep(1.0)
    idle = high_water_mib(pid)
    url = f"http://127.0.0.1:{proxy_port}/v1/chat/completions"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        statuses = await asyncio.gather(*(post(session, url, body) for body in sent))
    peak = high_water_mib(pid)
    return {"statuses": sorted(set(statuses)), "idle_mib": idle, "peak_mib": peak}


def run() -> dict[str, Any]:
    """Each attack against its own fresh sidecar."""
    results: dict[str, Any] = {}
    for name, sent in bodies().items():
        ports = (free_port(), free_port(), free_port())
        with tempfile.TemporaryDirectory() as tmp:
            config = write_config(Path(tmp), *ports)
            procs = start(config, ports[0])
            try:
                results[name] = asyncio.run(attack(procs[1].pid, ports[1], ports[2], sent))
            finally:
                for proc in procs:
                    proc.terminate()
                for proc in procs:
                    proc.wait(timeout=30)
    return results


def table(results: dict[str, Any]) -> str:
    lines = [f"{'attack':<36}{'status':>10}{'idle RSS':>10}{'peak RSS':>10}  (MiB)"]
    for name, row in results.items():
        statuses = ",".join(str(s) for s in row["statuses"])
        lines.append(f"{name:<36}{statuses:>10}{row['idle_mib']:>10}{row['peak_mib']:>10}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help=f"write {RESULTS}")
    args = parser.parse_args()
    results = run()
    print(table(results))
    if args.json:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
