"""``promethios instructions``, ``promethios package`` and ``promethios rollback``.

Each reads what it needs from the API server through :mod:`promethios.kube` (with the
caller's kubeconfig: these are a person's commands, not the operator's), then hands the
objects to the pure modules beside this one. Errors name the object or the flag and exit
with status 1; usage errors exit with 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import pydantic
import yaml

from ..api.agent import InvalidSpec, parse_agent
from ..api.apikey import DATA_KEY, secret_name
from ..api.policy import GovernancePolicySpec
from ..api.rollout import Runtime
from ..api.sidecarconfig import CONFIG_KEY
from ..builders.meta import ChildNames
from ..builders.revision import controller_revision_name
from ..builders.sidecar import CA_BUNDLE_KEY
from ..kube import apply as kapply
from ..kube import objects
from ..kube.client import Client, ClientSettings, shared_client
from . import compose, history, kustomize
from .instructions import render
from .output import write

#: Field manager of the spec ``promethios rollback`` writes.
ROLLBACK_FIELD_MANAGER = "promethios-rollback"


class CommandError(Exception):
    """A failure to report in one line (exit status 1)."""


def _client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube)")
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")


def _client(args: argparse.Namespace) -> Client:
    return shared_client(ClientSettings(kubeconfig=args.kubeconfig, context=args.context))


def agent_ref(text: str) -> tuple[str, str]:
    """``<namespace>/<agent>`` split in two; argparse type (the error names the form)."""
    namespace, slash, name = text.partition("/")
    if not slash or not namespace or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"expected <namespace>/<agent>, got {text!r}")
    return namespace, name


def _agent_body(client: Client, namespace: str, name: str) -> dict[str, Any]:
    body = objects.get_governed_agent(client, namespace, name)
    if body is None:
        raise CommandError(f"GovernedAgent {namespace}/{name} not found")
    return body


def _policy_spec(client: Client, namespace: str, name: str) -> dict[str, Any] | None:
    policy = objects.get_policy(client, namespace, name)
    return None if policy is None else dict(policy.get("spec") or {})


def _run(main: Any, argv: Sequence[str]) -> int:
    try:
        code: int = main(list(argv))
    except CommandError as error:
        print(f"promethios: {error}", file=sys.stderr)
        return 1
    except (InvalidSpec, pydantic.ValidationError) as error:
        print(f"promethios: invalid spec: {error}", file=sys.stderr)
        return 1
    except kapply.ApiException as error:
        print(f"promethios: the API server answered {error.status} {error.reason}", file=sys.stderr)
        return 1
    return code


# -- instructions -------------------------------------------------------------------------


def instructions_main(argv: Sequence[str]) -> int:
    """``promethios instructions <namespace>/<agent>``: print its integration instructions."""
    return _run(_instructions, argv)


def _instructions(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="promethios instructions",
        description="Print how an agent's code reaches its model and reports, with its real "
        "values (never its key).",
    )
    parser.add_argument("agent", type=agent_ref, metavar="NAMESPACE/AGENT")
    _client_arguments(parser)
    args = parser.parse_args(argv)
    namespace, name = args.agent
    client = _client(args)
    body = _agent_body(client, namespace, name)
    agent = parse_agent(body)
    policy = _policy_spec(client, namespace, agent.spec.governance.policy_ref.name)
    parsed = GovernancePolicySpec.model_validate(policy) if policy is not None else None
    print(render(agent, parsed, body.get("status") or {}), end="")
    return 0


# -- package ------------------------------------------------------------------------------


def package_main(argv: Sequence[str]) -> int:
    """``promethios package``: write a GitOps (kustomize) or Docker Compose bundle."""
    return _run(_package, argv)


def _package_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promethios package",
        description="Write a ready-to-commit bundle: kustomize base + dev/prod overlays for a "
        "new agent (NAME) or a live one (NAMESPACE/AGENT --from-cluster), or, with "
        "--format compose, Docker Compose for a live agent with spec.runtime External.",
    )
    parser.add_argument("target", metavar="NAME | NAMESPACE/AGENT")
    parser.add_argument("--format", choices=("kustomize", "compose"), default="kustomize")
    parser.add_argument("--output", type=Path, help="directory (default: ./<agent>[-compose])")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    new = parser.add_argument_group("a new agent (kustomize)")
    new.add_argument("--namespace", default="default", help="overlays use <namespace>-<env>")
    new.add_argument("--image", help="the agent's container image (required)")
    new.add_argument("--provider", choices=("openai", "anthropic", "custom"), default="openai")
    new.add_argument("--base-url", help="provider base URL (required for custom)")
    new.add_argument("--model", action="append", default=[], help="an allowed model (repeat)")
    new.add_argument("--port", type=int, default=8080, help="the port the agent serves on")
    new.add_argument("--runtime", choices=[r.value for r in Runtime], default=Runtime.POD.value)
    live = parser.add_argument_group("a live agent")
    live.add_argument("--from-cluster", action="store_true", help="kustomize: base = live specs")
    live.add_argument("--with-key", action="store_true", help="compose: write the API key file")
    live.add_argument("--ingest-url", help="compose: the ingest URL to report to")
    live.add_argument("--sidecar-image", help="compose: the sidecar image")
    _client_arguments(parser)
    return parser


def _package(argv: list[str]) -> int:
    parser = _package_parser()
    args = parser.parse_args(argv)
    private: Collection[str] = ()
    if args.format == "compose" or args.from_cluster:
        try:
            namespace, name = agent_ref(args.target)
        except argparse.ArgumentTypeError as error:
            parser.error(str(error))
        client = _client(args)
        if args.format == "compose":
            content, private = _compose_files(client, namespace, name, args), compose.SECRET_FILES
        else:
            content = _live_bundle_files(client, namespace, name, args)
        default = Path(f"{name}-compose" if args.format == "compose" else name)
    else:
        if not args.image:
            parser.error("--image is required for a new agent (or use --from-cluster)")
        namespace, _, name = args.target.rpartition("/")
        try:
            bundle = kustomize.new_bundle(
                name,
                namespace or args.namespace,
                args.image,
                args.provider,
                args.base_url,
                tuple(args.model),
                args.port,
                Runtime(args.runtime),
            )
        except ValueError as error:
            if isinstance(error, pydantic.ValidationError):
                raise
            parser.error(str(error))
        content, default = kustomize.files(bundle), Path(name)
    directory = args.output or default
    try:
        written = write(directory, content, force=args.force, private=private)
    except FileExistsError as error:
        raise CommandError(str(error)) from None
    print(f"wrote {len(written)} files to {directory}/ (start with {directory}/README.md)")
    return 0


def _live_bundle_files(
    client: Client, namespace: str, name: str, args: argparse.Namespace
) -> dict[str, str]:
    body = _agent_body(client, namespace, name)
    spec = body.get("spec") or {}
    policy = _policy_spec(client, namespace, spec["governance"]["policyRef"]["name"])
    sinks: dict[str, dict[str, Any]] = {}
    for ref in spec.get("alertSinks") or []:
        sink = objects.get(client, "AlertSink", namespace, ref["name"])
        if sink is None:
            raise CommandError(f"AlertSink {namespace}/{ref['name']} not found")
        sinks[ref["name"]] = dict(sink.get("spec") or {})
    return kustomize.files(kustomize.bundle_from_cluster(body, policy, sinks))


def _compose_files(
    client: Client, namespace: str, name: str, args: argparse.Namespace
) -> dict[str, str]:
    agent = parse_agent(_agent_body(client, namespace, name))
    if agent.spec.runtime != Runtime.EXTERNAL:
        raise CommandError(
            f"GovernedAgent {namespace}/{name} has spec.runtime {agent.spec.runtime}: the "
            "operator runs it in the cluster; set spec.runtime: External to run it elsewhere"
        )
    config_map = objects.get(client, "ConfigMap", namespace, ChildNames.of(name).config_map)
    data = (config_map or {}).get("data") or {}
    if CONFIG_KEY not in data:
        raise CommandError(
            f"ConfigMap {namespace}/{ChildNames.of(name).config_map} has no {CONFIG_KEY} yet: "
            "the operator issues it once the agent's policy exists (see its Ready condition)"
        )
    key = None
    if args.with_key:
        key = objects.secret_value(client, namespace, secret_name(name), DATA_KEY)
        if key is None:
            raise CommandError(f"Secret {namespace}/{secret_name(name)} has no {DATA_KEY} yet")
    inputs = compose.ComposeInputs(
        agent, data[CONFIG_KEY], data.get(CA_BUNDLE_KEY), args.sidecar_image, args.ingest_url, key
    )
    try:
        return compose.files(inputs)
    except ValueError as error:
        raise CommandError(str(error)) from None


# -- rollback -----------------------------------------------------------------------------


def rollback_main(argv: Sequence[str]) -> int:
    """``promethios rollback <namespace>/<agent> [--to-revision N]``."""
    return _run(_rollback, argv)


def _rollback(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="promethios rollback",
        description="Restore an earlier revision's spec (default: the previous one).",
    )
    parser.add_argument("agent", type=agent_ref, metavar="NAMESPACE/AGENT")
    parser.add_argument("--to-revision", type=int, metavar="N", help="the revision to restore")
    parser.add_argument("--list", action="store_true", help="show the history and exit")
    parser.add_argument("--dry-run", action="store_true", help="print the spec, change nothing")
    _client_arguments(parser)
    args = parser.parse_args(argv)
    namespace, name = args.agent
    client = _client(args)
    body = _agent_body(client, namespace, name)
    status = body.get("status") or {}
    if args.list:
        print(history.table(status))
        return 0
    try:
        target = history.pick_target(status, args.to_revision)
    except history.RollbackError as error:
        raise CommandError(str(error)) from None
    stored_name = controller_revision_name(name, str(target["hash"]))
    stored = objects.get(client, "ControllerRevision", namespace, stored_name)
    if stored is None or not isinstance(stored.get("data"), dict):
        raise CommandError(f"ControllerRevision {namespace}/{stored_name} not found")
    restored = history.rolled_back(body, stored["data"])
    if not args.dry_run:
        try:
            kapply.replace(client, restored, field_manager=ROLLBACK_FIELD_MANAGER)
        except kapply.ApiException as error:
            if error.status == 409:
                raise CommandError(f"{namespace}/{name} changed meanwhile; run again") from None
            raise
    _report(target, restored, client, args.dry_run, stored["data"])
    return 0


def _report(
    target: dict[str, Any] | Any,
    restored: dict[str, Any],
    client: Client,
    dry_run: bool,
    data: dict[str, Any],
) -> None:
    metadata = restored["metadata"]
    ref = f"{metadata['namespace']}/{metadata['name']}"
    verb = "would restore" if dry_run else "restored"
    print(
        f"{ref}: {verb} revision {target['revision']}'s spec (image {target.get('image')}, "
        f"policy {target.get('policy')}); the operator rolls it out as a new revision."
    )
    current_policy = _policy_spec(client, metadata["namespace"], target.get("policy") or "")
    note = history.policy_note(data, current_policy)
    if note:
        print(f"note: {note}")
    print(
        "\nGitOps: commit this spec to the agent's source (e.g. spec.image in "
        "overlays/<env>/governedagent-patch.yaml), or the next sync puts the newer one back:\n"
    )
    print(yaml.safe_dump(history.commit_manifest(restored), sort_keys=False), end="")
