"""The end-to-end tests' agent: a tiny program that calls the model through its sidecar.

Standard library only. It knows the model only by ``OPENAI_BASE_URL`` (set by the operator
to the sidecar's proxy on localhost) and holds no credential (``OPENAI_API_KEY`` is the
operator's placeholder). Commands, run as the container's entry point or with
``kubectl exec``:

- ``serve``: answer ``GET /healthz`` on ``$PORT`` (the pod's readiness) until stopped;
- ``ask PROMPT``: one chat completion; prints ``{"status": ..., "reply"|"error": ...}``;
- ``connect HOST PORT``: try a TCP connection straight to an address (not through the
  sidecar); prints ``{"connected": true|false, "error": ...}``;
- ``bench BASE_URL N``: N chat completions to ``BASE_URL`` (an OpenAI-style base, e.g. the
  sidecar's, the gateway's or the provider's) on one kept-alive connection, after 20 to
  warm up; prints ``{"n": N, "p50_ms": ..., "p99_ms": ...}``;
- ``look-for SHA256...``: search this container's environment and every readable file
  for values with those SHA-256 digests (the tests pass digests, never the secrets);
  prints ``{"found": [...], "files_checked": N}``.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import json
import os
import socket
import statistics
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

SKIP_DIRS = ("/proc", "/sys", "/dev")
MAX_FILE = 4 * 1024 * 1024


def ask(prompt: str, model: str = "gpt-4o-mini") -> dict[str, object]:
    base = os.environ["OPENAI_BASE_URL"].rstrip("/")
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": prompt}]})
    request = urllib.request.Request(
        f"{base}/chat/completions",
        data=body.encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {os.environ.get('OPENAI_API_KEY', '')}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            payload = json.loads(response.read())
            reply = payload["choices"][0]["message"]["content"]
            return {"status": response.status, "reply": reply}
    except urllib.error.HTTPError as error:
        return {"status": error.code, "error": error.read().decode(errors="replace")[:500]}
    except (urllib.error.URLError, OSError) as error:
        return {"status": 0, "error": str(error)}


def connect(host: str, port: int) -> dict[str, object]:
    try:
        with socket.create_connection((host, port), timeout=3):
            return {"connected": True}
    except OSError as error:
        return {"connected": False, "error": str(error)}


def bench(base_url: str, n: int) -> dict[str, object]:
    """Latency of N calls on one kept-alive connection (the floor and the governed paths
    measured alike: same request, same client)."""
    parts = urllib.parse.urlsplit(base_url.rstrip("/"))
    path = f"{parts.path}/chat/completions"
    body = json.dumps(
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "benchmark " * 100}]}
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {os.environ.get('OPENAI_API_KEY', '')}",
    }
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=20)
    timings: list[float] = []
    for index in range(n + 20):
        started = time.perf_counter()
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            return {"n": index, "error": f"status {response.status}"}
        if index >= 20:
            timings.append((time.perf_counter() - started) * 1000.0)
    connection.close()
    cuts = statistics.quantiles(timings, n=100, method="inclusive")
    return {"n": n, "p50_ms": round(cuts[49], 3), "p99_ms": round(cuts[98], 3)}


def _candidates(text: str) -> set[str]:
    """Every line and whitespace-separated word, stripped: a secret stored on its own."""
    found = {line.strip() for line in text.splitlines()}
    found.update(text.split())
    return {item for item in found if item}


def look_for(digests: set[str]) -> dict[str, object]:
    found: set[str] = set()
    checked = 0

    def check(text: str, where: str) -> None:
        for item in _candidates(text):
            if hashlib.sha256(item.encode()).hexdigest() in digests:
                found.add(where)

    for name, value in os.environ.items():
        check(value, f"env:{name}")
    for root, dirs, files in os.walk("/", onerror=lambda error: None):
        if root.startswith(SKIP_DIRS):
            dirs[:] = []
            continue
        for name in files:
            path = os.path.join(root, name)
            try:
                if os.path.islink(path) or os.path.getsize(path) > MAX_FILE:
                    continue
                with open(path, "rb") as handle:
                    data = handle.read()
            except OSError:
                continue  # unreadable to this user: exactly what the test wants
            checked += 1
            check(data.decode(errors="replace"), path)
    return {"found": sorted(found), "files_checked": checked}


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "serve"
    if command == "ask":
        print(json.dumps(ask(" ".join(argv[2:]))))
        return 0
    if command == "connect":
        print(json.dumps(connect(argv[2], int(argv[3]))))
        return 0
    if command == "bench":
        print(json.dumps(bench(argv[2], int(argv[3]))))
        return 0
    if command == "look-for":
        print(json.dumps(look_for(set(argv[2:]))))
        return 0
    port = int(os.environ.get("PORT", "8080"))
    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Health)
    print(f"agent: serving /healthz on :{port}; model at {os.environ.get('OPENAI_BASE_URL')}")
    sys.stdout.flush()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
