"""What an OTLP metrics exporter would cost the sidecar at idle (a measurement, not a test).

The sidecar exports its GenAI metrics for Prometheus only. Issue 12 asked for an OTLP
exporter only if it does not cost idle memory; this script measures that cost. It needs an
interpreter with ``opentelemetry-sdk`` and ``opentelemetry-exporter-otlp-proto-http`` (not
project dependencies), e.g.::

    python3 -m venv /tmp/otel && /tmp/otel/bin/pip install opentelemetry-sdk \\
        opentelemetry-exporter-otlp-proto-http aiohttp pydantic prometheus-client psutil
    /tmp/otel/bin/python hack/measure_otlp_memory.py

It starts, three times each and alternately, the idle floor process of
``benchmarks/bench_sidecar.py`` (aiohttp, pydantic and prometheus_client, two idle
listeners) and the same process plus an OpenTelemetry MeterProvider with a periodic OTLP/HTTP
exporter and the two GenAI histograms, and prints both idle RSS figures and the difference.
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_sidecar import RSS_FLOOR  # noqa: E402

OTLP = """
from opentelemetry import metrics
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

reader = PeriodicExportingMetricReader(
    OTLPMetricExporter(endpoint="http://127.0.0.1:9/v1/metrics"), export_interval_millis=60_000
)
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
meter = metrics.get_meter("promethios-sidecar")
meter.create_histogram("gen_ai.client.token.usage", unit="{token}")
meter.create_histogram("gen_ai.client.operation.duration", unit="s")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def idle_rss(code: str) -> float:
    """Idle RSS (MiB) of ``code`` run as a process, 3 s after its second listener answers."""
    ports = (free_port(), free_port())
    process = subprocess.Popen([sys.executable, "-c", code, *map(str, ports)])
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", ports[1])) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the process did not come up")
            time.sleep(0.05)
        time.sleep(3)
        return round(psutil.Process(process.pid).memory_info().rss / 2**20, 1)
    finally:
        process.terminate()
        process.wait(10)


def main() -> int:
    with_otlp = OTLP + RSS_FLOOR
    floors, exporters = [], []
    for _ in range(3):
        floors.append(idle_rss(RSS_FLOOR))
        exporters.append(idle_rss(with_otlp))
    floor, exporter = statistics.median(floors), statistics.median(exporters)
    print(f"floor idle RSS (MiB)            {floor:>6}  {floors}")
    print(f"floor + OTLP exporter (MiB)     {exporter:>6}  {exporters}")
    print(f"added by the exporter (MiB)     {exporter - floor:>6.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
