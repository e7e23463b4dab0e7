"""``promethios cluster``: start a local control plane and keep it up until Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from .cluster import LocalCluster
from .errors import LocalClusterError
from .realnode import steering_annotations, toleration

CHECK_INTERVAL = 1.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promethios cluster",
        description="Run an embedded Kubernetes control plane (etcd, kube-apiserver, "
        "controller-manager, scheduler, kwok fake nodes, optionally a real node) until "
        "interrupted.",
    )
    parser.add_argument("--nodes", type=int, default=2, help="fake kwok nodes (default 2)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep certificates, data and logs here (default: a temp dir)",
    )
    parser.add_argument(
        "--kubeconfig-out",
        type=Path,
        default=None,
        help="also copy the admin kubeconfig to this path",
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="start-up timeout in seconds (default 120)"
    )
    parser.add_argument(
        "--real-node",
        action="store_true",
        help="also run one real kubelet node (root only) that runs pods tolerating its "
        "taint; images come from `make image`'s archives",
    )
    parser.add_argument(
        "--image-archive",
        type=Path,
        action="append",
        default=None,
        help="image archive the real node imports (repeatable; default: every archive "
        "`make image` wrote)",
    )
    return parser


def _wait_for_signal(cluster: LocalCluster) -> None:
    """Block until SIGINT/SIGTERM, or raise if a component dies meanwhile."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(CHECK_INTERVAL):
            cluster.check_running()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def real_node_hint(node: str) -> str:
    """How to put pods on the real node."""
    annotations = " ".join(f"{k}='{v}'" for k, v in steering_annotations().items())
    return (
        f"Real node {node}: pods need the toleration {toleration()}; or annotate a "
        f"namespace so all its pods land there:\n  kubectl annotate namespace NAME {annotations}"
    )


def run_cli(argv: list[str] | None = None) -> int:
    """Start the cluster, print how to use it, wait for Ctrl-C; return the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        with LocalCluster(
            nodes=args.nodes,
            workdir=args.workdir,
            startup_timeout=args.timeout,
            real_nodes=1 if args.real_node else 0,
            image_archives=args.image_archive,
        ) as cluster:
            kubeconfig = cluster.kubeconfig
            if args.kubeconfig_out is not None:
                shutil.copyfile(kubeconfig, args.kubeconfig_out)
                args.kubeconfig_out.chmod(0o600)
                kubeconfig = args.kubeconfig_out.absolute()
            print(f"Cluster ready in {cluster.startup_seconds:.1f} s; logs in {cluster.log_dir}")
            print(f"kubeconfig: {kubeconfig}")
            print(f"export KUBECONFIG={kubeconfig}", flush=True)
            if cluster.real_node is not None:
                print(real_node_hint(cluster.real_node.name), flush=True)
            _wait_for_signal(cluster)
            print("Stopping the cluster...", flush=True)
        if cluster.cleanup_failures:
            print("error: the real node's clean-up failed:", file=sys.stderr)
            print("\n".join(cluster.cleanup_failures), file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("Interrupted; cluster stopped.", file=sys.stderr)
        return 130
    except LocalClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
