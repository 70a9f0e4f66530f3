"""`kmcp deploy` (a project's kmcp.yaml) and `kmcp deploy package` (an npx or uvx package): apply an MCPServer,
wait until it is Ready, then port-forward to it for the MCP Inspector (see :mod:`kmcp.commands.deploy`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from kmcp.cli.common import Commands, kube_flags, seconds, subcommands
from kmcp.errors import EXIT_OK, BadInput, CommandFailed


def register(commands: Commands) -> None:
    p = commands.add("deploy", deploy_command,
                     "deploy the project in kmcp.yaml as an MCPServer and wait until it is Ready",
                     "kmcp deploy --file my-mcp-server/kmcp.yaml --image my-mcp-server:latest --environment staging\n"
                     "  kmcp deploy --file kmcp.yaml --image my-mcp-server:latest --dry-run -o yaml\n"
                     "  kmcp deploy package --deployment-name everything --manager npx "
                     "--args @modelcontextprotocol/server-everything")
    p.add_argument("-f", "--file", default="kmcp.yaml", help="the project's kmcp.yaml (default: ./kmcp.yaml)")
    p.add_argument("--image", help="image of the MCP server (e.g. from kmcp build)")
    p.add_argument("--environment", help="use secrets.ENV of kmcp.yaml (provider kubernetes -> secretRefs)")
    _deploy_flags(p)
    pp = subcommands(p, "deploy_command", "[package]").add(
        "package", deploy_command, "deploy an npm (npx) or PyPI (uvx) package",
        "kmcp deploy package --deployment-name everything --manager npx "
        "--args @modelcontextprotocol/server-everything",
        description="deploy an MCP server package run by npx or uvx")
    _deploy_flags(pp)
    pp.add_argument("--deployment-name", required=True, help="name of the MCPServer")
    pp.add_argument("--manager", required=True, choices=("npx", "uvx"), help="package runner")
    pp.add_argument("--args", nargs="+", required=True, metavar="ARG", help="the package and its arguments")
    pp.add_argument("--image", help="image with the runner (default: node:22-slim for npx, uv's image for uvx)")
    pp.add_argument("--env", action="append", metavar="KEY=VALUE", help="environment variable (repeatable)")
    pp.add_argument("--secret", action="append", metavar="NAME", help="Secret for envFrom (repeatable)")


def _deploy_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--namespace", default="default", help="namespace (default: default)")
    kube_flags(p)
    p.add_argument("--dry-run", action="store_true",
                   help="print the MCPServer and the objects the controller will apply; change nothing")
    p.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml", help="--dry-run format")
    p.add_argument("--adapter-image", help="--dry-run: the controller's adapter image")
    p.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                   help="wait until the MCPServer is Ready (default: wait); a cluster that cannot run its pod "
                        "(no node, no scheduler, an image it cannot pull, no deployment controller) fails within "
                        "seconds, saying what is missing and where to look")
    p.add_argument("--timeout", type=seconds, default=300.0, help="how long to wait (default 5m)")
    p.add_argument("--no-inspector", action="store_true",
                   help="after Ready, do not port-forward 127.0.0.1:3000 or start the MCP Inspector")


def deploy_command(args: argparse.Namespace) -> int:
    from kmcp.commands import deploy as d
    from kmcp.commands.cluster import run_with_kube

    if getattr(args, "deploy_command", None) == "package":
        env = dict(_key_values(args.env, "--env"))
        request = d.request_for_package(args.deployment_name, args.manager, args.args, args.namespace,
                                        image=args.image, env=env, secret_refs=args.secret)
    else:
        if not args.image:
            raise BadInput("--image is required (the image `kmcp build` made, e.g. my-mcp-server:latest)")
        project = d.load_project(Path(args.file))
        request = d.request_from_project(project, args.image, args.namespace, args.environment)
    if args.dry_run:
        d.print_objects(d.dry_run_objects(request, args.adapter_image), args.output)
        return EXIT_OK
    obj, _ = d.validated_mcpserver(request)
    run_with_kube(args.kubeconfig, lambda client: d.deploy(client, obj, wait=args.wait, within=args.timeout))
    if not args.wait:
        return EXIT_OK
    print(d.inspector_settings(request.name, request.namespace), end="")
    if args.no_inspector:
        return EXIT_OK
    from kmcp.commands.portforward import forward_and_inspect

    try:
        return forward_and_inspect(args.kubeconfig, request.name, request.namespace, request.port, check=True)
    except CommandFailed as error:
        raise CommandFailed(f"mcpserver {request.namespace}/{request.name} is Ready, but the port-forward "
                            f"for the Inspector failed: {error}") from None


def _key_values(items: list[str] | None, flag: str) -> list[tuple[str, str]]:
    out = []
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadInput(f"{flag} {item!r}: expected KEY=VALUE")
        out.append((key, value))
    return out
