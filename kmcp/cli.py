"""The `kmcp` command line: argv -> one mode or command. Imports each command's module only when it runs.

Exit codes: 0 success, 1 the operation failed, 2 bad usage or invalid input. Errors are one line on stderr,
never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kmcp import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input from the user: reported on one line, exit code 2."""


def _load_yaml_documents(path: str) -> Iterator[tuple[int, Any]]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as error:
        raise UsageError(f"{path}: {error.strerror or error}") from None
    try:
        for index, doc in enumerate(yaml.load_all(text, Loader=loader)):
            if doc is not None:
                yield index, doc
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        problem = getattr(error, "problem", None) or str(error)
        raise UsageError(f"{where}: invalid YAML: {problem}") from None


def _mcpservers(path: str) -> Iterator[Any]:
    """Every MCPServer in a (multi-document) YAML file, validated; other kinds are skipped with a note."""
    from kmcp import spec

    found = False
    for index, doc in _load_yaml_documents(path):
        if isinstance(doc, dict) and doc.get("kind") not in (None, spec.KIND):
            name = (doc.get("metadata") or {}).get("name", "?") if isinstance(doc.get("metadata"), dict) else "?"
            print(f"kmcp: skipping {doc.get('kind')}/{name} (document {index + 1}): not an MCPServer",
                  file=sys.stderr)
            continue
        try:
            yield spec.validated(doc)
        except spec.SpecError as error:
            raise UsageError(f"{path} (document {index + 1}): {error}") from None
        found = True
    if not found:
        raise UsageError(f"{path}: no MCPServer found")


def _print_objects(objects: list[dict[str, Any]], output: str) -> None:
    if output == "json":
        import json

        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2))
    else:
        from kmcp.render import to_yaml

        sys.stdout.write(to_yaml(objects))


def cmd_render(args: argparse.Namespace) -> int:
    from kmcp.render import RenderSettings, render

    settings = RenderSettings(adapter_image=args.adapter_image) if args.adapter_image else RenderSettings()
    objects: list[dict[str, Any]] = []
    for server in _mcpservers(args.file):
        if args.namespace and not server.metadata.namespace:
            server.metadata.namespace = args.namespace
        objects.extend(render(server, settings))
    _print_objects(objects, args.output)
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    count = sum(1 for _ in _mcpservers(args.file))
    print(f"{args.file}: {count} valid MCPServer{'s' if count != 1 else ''}")
    return EXIT_OK


def cmd_crd(args: argparse.Namespace) -> int:
    from kmcp.crd import crd_yaml

    sys.stdout.write(crd_yaml())
    return EXIT_OK


def _developer_command(func: Callable[[], int]) -> int:
    """Run a kmcp.commands/kmcp.scaffold operation, turning its errors into kmcp's exit codes."""
    from kmcp.commands import BadInput, CommandFailed

    try:
        return func()
    except BadInput as error:
        raise UsageError(str(error)) from None
    except CommandFailed as error:
        print(f"kmcp: error: {error}", file=sys.stderr)
        return EXIT_FAILED


def cmd_init(args: argparse.Namespace) -> int:
    from kmcp.scaffold import InitRequest, init_project

    def run() -> int:
        directory = Path(args.directory)
        written = init_project(InitRequest(args.framework, directory, name=args.name,
                                           description=args.description or "", force=args.force))
        print(f"created {args.framework} MCP server project in {directory}:")
        for path in written:
            print(f"  {path.relative_to(directory)}")
        print(f"next: kmcp build --project-dir {directory} -t <image>:latest")
        return EXIT_OK

    return _developer_command(run)


def cmd_add_tool(args: argparse.Namespace) -> int:
    from kmcp.scaffold import AddToolRequest, add_tool

    def run() -> int:
        changed = add_tool(AddToolRequest(args.name, Path(args.project_dir), description=args.description or ""))
        print(f"added tool {args.name}: " + ", ".join(str(p) for p in changed))
        return EXIT_OK

    return _developer_command(run)


def cmd_build(args: argparse.Namespace) -> int:
    from kmcp.commands.build import BuildRequest, build_image

    def run() -> int:
        tag = build_image(BuildRequest(Path(args.project_dir), tag=args.tag, kind_load_cluster=args.kind_load_cluster,
                                       push=args.push, platform=args.platform, dockerfile=args.dockerfile))
        print(f"built {tag}")
        return EXIT_OK

    return _developer_command(run)


def cmd_completion(args: argparse.Namespace) -> int:
    from kmcp.commands.completion import completion_script

    sys.stdout.write(completion_script(build_parser(), args.shell))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from kmcp.commands.run import RunRequest, run_project

    return _developer_command(lambda: run_project(RunRequest(Path(args.project_dir), port=args.port,
                                                             inspector=not args.no_inspector)))


def cmd_install(args: argparse.Namespace) -> int:
    from kmcp.commands.cluster import run_with_kube
    from kmcp.commands.install import InstallRequest, image_for, objects_for, run_install

    def run() -> int:
        request = InstallRequest(namespace=args.namespace, image=image_for(args.image, args.version),
                                 wait=args.wait, timeout=args.timeout)
        if args.dry_run:
            _print_objects(objects_for(request), args.output)
            return EXIT_OK
        run_with_kube(args.kubeconfig, lambda client: run_install(client, request))
        return EXIT_OK

    return _developer_command(run)


def cmd_uninstall(args: argparse.Namespace) -> int:
    from kmcp.commands.cluster import run_with_kube
    from kmcp.commands.install import InstallRequest, run_uninstall

    def run() -> int:
        request = InstallRequest(namespace=args.namespace, wait=args.wait, timeout=args.timeout,
                                 include_crd=not args.keep_crd, remove_finalizers=args.remove_finalizers)
        run_with_kube(args.kubeconfig, lambda client: run_uninstall(client, request))
        return EXIT_OK

    return _developer_command(run)


def cmd_deploy(args: argparse.Namespace) -> int:
    from kmcp.commands import deploy as d
    from kmcp.commands.cluster import run_with_kube

    def run() -> int:
        if getattr(args, "deploy_command", None) == "package":
            env = dict(_key_values(args.env, "--env"))
            request = d.request_for_package(args.deployment_name, args.manager, args.args, args.namespace,
                                            image=args.image, env=env, secret_refs=args.secret)
        else:
            if not args.image:
                raise UsageError("--image is required (the image `kmcp build` made, e.g. my-mcp-server:latest)")
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
        from kmcp.commands import CommandFailed
        from kmcp.commands.portforward import forward_and_inspect

        try:
            return forward_and_inspect(args.kubeconfig, request.name, request.namespace, request.port)
        except CommandFailed as error:
            raise CommandFailed(f"mcpserver {request.namespace}/{request.name} is Ready, but the port-forward "
                                f"for the Inspector failed: {error}") from None

    return _developer_command(run)


def _key_values(items: list[str] | None, flag: str) -> list[tuple[str, str]]:
    out = []
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} {item!r}: expected KEY=VALUE")
        out.append((key, value))
    return out


def cmd_get(args: argparse.Namespace) -> int:
    from kmcp.commands.cluster import run_with_kube
    from kmcp.commands.get import run_get

    def run() -> int:
        run_with_kube(args.kubeconfig, lambda client: run_get(client, args.namespace, args.all_namespaces,
                                                              args.output, args.name))
        return EXIT_OK

    return _developer_command(run)


def cmd_status(args: argparse.Namespace) -> int:
    from kmcp.commands.cluster import run_with_kube
    from kmcp.commands.get import run_status

    def run() -> int:
        run_with_kube(args.kubeconfig, lambda client: run_status(client, args.name, args.namespace))
        return EXIT_OK

    return _developer_command(run)


def cmd_secrets(args: argparse.Namespace) -> int:
    raise UsageError("secrets needs a subcommand: kmcp secrets sync ENV")


def cmd_secrets_sync(args: argparse.Namespace) -> int:
    from kmcp.commands.cluster import run_with_kube
    from kmcp.commands.secrets import secret_for_environment, sync

    def run() -> int:
        secret = secret_for_environment(Path(args.project_dir), args.environment, args.namespace)
        run_with_kube(args.kubeconfig, lambda client: sync(client, secret))
        return EXIT_OK

    return _developer_command(run)


def cmd_port_forward(args: argparse.Namespace) -> int:
    from kmcp.commands.portforward import forward_and_inspect

    return _developer_command(lambda: forward_and_inspect(
        args.kubeconfig, args.name, args.namespace or "default", args.pod_port, local_port=args.port,
        address=args.address, inspector=args.inspector))


def cmd_dev(args: argparse.Namespace) -> int:
    raise UsageError("dev needs a subcommand: kmcp dev up [--check | --detach], kmcp dev down")


def _dev_settings(args: argparse.Namespace) -> Any:
    from kmcp.commands.devup import DevSettings, default_directory

    directory = Path(args.dir).expanduser() if args.dir else default_directory()
    return DevSettings(directory=directory, port=getattr(args, "port", 3000), check=getattr(args, "check", False))


def cmd_dev_up(args: argparse.Namespace) -> int:
    from kmcp.commands import devup

    settings = _dev_settings(args)
    if args.detach and args.check:
        raise UsageError("--detach and --check cannot be combined")
    return _developer_command(lambda: devup.run_detached(settings) if args.detach else devup.run_dev_up(settings))


def cmd_dev_down(args: argparse.Namespace) -> int:
    from kmcp.commands import devup

    return _developer_command(lambda: devup.run_dev_down(_dev_settings(args)))


def cmd_dev_echo_server(args: argparse.Namespace) -> int:
    from kmcp.examples_server import main as serve

    return serve()


def cmd_version(args: argparse.Namespace) -> int:
    print(f"kmcp {__version__}")
    return EXIT_OK


EXAMPLES = """\
modes:
  kmcp controller [--leader-elect] ...  reconcile MCPServers (run `kmcp controller --help`)
  kmcp adapter -- CMD [ARGS...]         serve a stdio MCP server over HTTP (Streamable HTTP /mcp, SSE /sse)

quick start (no cluster needed):
  kmcp dev up --check                      local control plane + controller + an example MCP server; talk MCP to it

examples:
  kmcp render -f mcpserver.yaml            print the Deployment, Service and ServiceAccount for an MCPServer
  kmcp validate -f mcpserver.yaml          check an MCPServer the way the controller will
  kmcp crd > kagent.dev_mcpservers.yaml    print the MCPServer CustomResourceDefinition
  kmcp init python my-mcp-server           scaffold a FastMCP server (or: kmcp init go my-mcp-server)
  kmcp build --project-dir my-mcp-server -t my-mcp-server:latest --kind-load-cluster kind
  kmcp run --project-dir my-mcp-server     serve it on http://127.0.0.1:3000/mcp and open the MCP Inspector
  kmcp install                             install the CRD and the controller into the current cluster
  kmcp deploy --file my-mcp-server/kmcp.yaml --image my-mcp-server:latest
  kmcp get -A ; kmcp status my-mcp-server  MCPServers, their conditions and events
  kmcp adapter --listen 127.0.0.1:3000 -- python server.py
"""


def _seconds(text: str) -> float:
    """90, 90s, 5m, 1h -> seconds (argparse type)."""
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        value = float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 5m)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _deploy_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--namespace", default="default", help="namespace (default: default)")
    _kube_flags(p)
    p.add_argument("--dry-run", action="store_true",
                   help="print the MCPServer and the objects the controller will apply; change nothing")
    p.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml", help="--dry-run format")
    p.add_argument("--adapter-image", help="--dry-run: the controller's adapter image")
    p.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                   help="wait until the MCPServer is Ready (default: wait)")
    p.add_argument("--timeout", type=_seconds, default=300.0, help="how long to wait (default 5m)")
    p.add_argument("--no-inspector", action="store_true",
                   help="after Ready, do not port-forward 127.0.0.1:3000 or start the MCP Inspector")


def _kube_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kmcp",
        description="kmcp: run MCP servers on Kubernetes (controller, stdio transport adapter, developer CLI).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kmcp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, func: Callable[[argparse.Namespace], int], help_text: str,
                example: str = "") -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text,
                           epilog=f"example:\n  {example}" if example else None,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func)
        return p

    sub.add_parser("controller", help="reconcile MCPServers in a cluster (run `kmcp controller --help`)")
    sub.add_parser("adapter", help="serve a stdio MCP server over HTTP (run `kmcp adapter --help`)")

    p = command("render", cmd_render, "print the Kubernetes objects the controller creates for MCPServers",
                "kmcp render -f examples/mcpservers/filesystem.yaml")
    p.add_argument("-f", "--file", required=True, help="MCPServer YAML file (- for stdin)")
    p.add_argument("-n", "--namespace", help="namespace for MCPServers that name none")
    p.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    p.add_argument("--adapter-image", help="image of the kmcp-adapter sidecar")

    p = command("validate", cmd_validate, "validate MCPServer YAML without a cluster",
                "kmcp validate -f mcpserver.yaml")
    p.add_argument("-f", "--file", required=True, help="MCPServer YAML file (- for stdin)")

    command("crd", cmd_crd, "print the MCPServer CustomResourceDefinition", "kmcp crd | kubectl apply -f -")
    p = command("init", cmd_init, "create an MCP server project (FastMCP Python or the Go MCP SDK)",
                'kmcp init python my-mcp-server --description "Tools for my team"')
    p.add_argument("framework", choices=("python", "go"), help="python (FastMCP) or go (Go MCP SDK)")
    p.add_argument("directory", help="project directory (created if missing; must be empty unless --force)")
    p.add_argument("--force", action="store_true", help="write the project files into a non-empty directory")
    p.add_argument("--name", help="project name in kmcp.yaml (default: from the directory name)")
    p.add_argument("--description", help="one-line description of the server")

    p = command("add-tool", cmd_add_tool, "add a tool stub to an MCP server project and declare it in kmcp.yaml",
                'kmcp add-tool weather --description "Current weather for a city" --project-dir my-mcp-server')
    p.add_argument("name", help="tool name (letters, digits, _ and -)")
    p.add_argument("--description", help="what the tool does (becomes its MCP description)")
    p.add_argument("--project-dir", default=".", help="project directory (default: .)")

    p = command("build", cmd_build, "build the project's container image with Docker or Podman",
                "kmcp build --project-dir my-mcp-server -t my-mcp-server:latest --kind-load-cluster kind")
    p.add_argument("--project-dir", default=".", help="project directory with a Dockerfile (default: .)")
    p.add_argument("-t", "--tag", help="image tag (default: <name>:<version> from kmcp.yaml)")
    p.add_argument("--kind-load-cluster", metavar="NAME", help="load the image into this kind cluster")
    p.add_argument("--push", action="store_true", help="push the image after building it")
    p.add_argument("--platform", help="target platform, e.g. linux/amd64")
    p.add_argument("--dockerfile", default="Dockerfile", help="Dockerfile in the project (default: Dockerfile)")

    p = command("run", cmd_run, "run the project's MCP server locally over HTTP (and open the MCP Inspector)",
                "kmcp run --project-dir my-mcp-server --port 3000")
    p.add_argument("--project-dir", default=".", help="project directory with kmcp.yaml (default: .)")
    p.add_argument("--port", type=int, default=3000, help="port on 127.0.0.1 (default 3000)")
    p.add_argument("--no-inspector", action="store_true", help="do not start the MCP Inspector (npx)")

    p = command("install", cmd_install, "install the MCPServer CRD and the kmcp controller into a cluster",
                "kmcp install --namespace kmcp-system --version 0.1.0 --no-wait")
    p.add_argument("-n", "--namespace", default="kmcp-system",
                   help="namespace of the controller (default: kmcp-system)")
    p.add_argument("--image", help="controller image (default: the kmcp controller image of this version)")
    p.add_argument("--version", help="controller image tag, e.g. 0.1.0 (ignored with --image)")
    _kube_flags(p)
    p.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                   help="wait until the controller Deployment is Available (default: wait)")
    p.add_argument("--timeout", type=_seconds, default=300.0, help="how long to wait, e.g. 90s or 5m (default 5m)")
    p.add_argument("--dry-run", action="store_true", help="print the objects instead of applying them")
    p.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml", help="--dry-run format")

    p = command("uninstall", cmd_uninstall, "remove the kmcp controller and the MCPServer CRD from a cluster",
                "kmcp uninstall --namespace kmcp-system --keep-crd")
    p.add_argument("-n", "--namespace", default="kmcp-system",
                   help="namespace of the controller (default: kmcp-system)")
    _kube_flags(p)
    p.add_argument("--keep-crd", action="store_true",
                   help="keep the CRD (deleting it deletes every MCPServer and what runs them)")
    p.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                   help="wait until the objects are gone (default: wait)")
    p.add_argument("--timeout", type=_seconds, default=120.0,
                   help="how long to wait for the MCPServers, then for the objects, to be gone (default 2m)")
    p.add_argument("--remove-finalizers", action="store_true",
                   help="if no controller finalizes the deleted MCPServers, delete their auth ClusterRoleBindings "
                        "and remove kmcp's finalizer yourself")

    p = command("deploy", cmd_deploy, "deploy the project in kmcp.yaml as an MCPServer and wait until it is Ready",
                "kmcp deploy --file my-mcp-server/kmcp.yaml --image my-mcp-server:latest --environment staging\n"
                "  kmcp deploy --file kmcp.yaml --image my-mcp-server:latest --dry-run -o yaml\n"
                "  kmcp deploy package --deployment-name everything --manager npx "
                "--args @modelcontextprotocol/server-everything")
    p.add_argument("-f", "--file", default="kmcp.yaml", help="the project's kmcp.yaml (default: ./kmcp.yaml)")
    p.add_argument("--image", help="image of the MCP server (e.g. from kmcp build)")
    p.add_argument("--environment", help="use secrets.ENV of kmcp.yaml (provider kubernetes -> secretRefs)")
    _deploy_flags(p)
    package_sub = p.add_subparsers(dest="deploy_command", metavar="[package]")
    pp = package_sub.add_parser("package", help="deploy an npm (npx) or PyPI (uvx) package",
                                description="deploy an MCP server package run by npx or uvx",
                                epilog="example:\n  kmcp deploy package --deployment-name everything --manager npx "
                                       "--args @modelcontextprotocol/server-everything",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    pp.set_defaults(func=cmd_deploy)
    _deploy_flags(pp)
    pp.add_argument("--deployment-name", required=True, help="name of the MCPServer")
    pp.add_argument("--manager", required=True, choices=("npx", "uvx"), help="package runner")
    pp.add_argument("--args", nargs="+", required=True, metavar="ARG", help="the package and its arguments")
    pp.add_argument("--image", help="image with the runner (default: node:22-slim for npx, uv's image for uvx)")
    pp.add_argument("--env", action="append", metavar="KEY=VALUE", help="environment variable (repeatable)")
    pp.add_argument("--secret", action="append", metavar="NAME", help="Secret for envFrom (repeatable)")

    p = command("get", cmd_get, "list MCPServers: NAME READY TRANSPORT URL AGE", "kmcp get -A")
    p.add_argument("name", nargs="?", help="one MCPServer")
    p.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig's)")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    p.add_argument("-o", "--output", choices=("table", "yaml", "json"), default="table")
    _kube_flags(p)

    p = command("status", cmd_status, "show an MCPServer's conditions and recent events",
                "kmcp status my-mcp-server -n default")
    p.add_argument("name", help="the MCPServer")
    p.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig's)")
    _kube_flags(p)

    p = command("secrets", cmd_secrets, "manage the project's secrets",
                "kmcp secrets sync staging --project-dir my-mcp-server")
    secrets_sub = p.add_subparsers(dest="secrets_command", metavar="sync")
    sp = secrets_sub.add_parser("sync", help="create or update the Secret of kmcp.yaml secrets.ENV from its .env file",
                                description="create or update the Secret named in kmcp.yaml secrets.ENV from the "
                                            "local .env file (server-side apply)",
                                epilog="example:\n  kmcp secrets sync staging --project-dir my-mcp-server",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.set_defaults(func=cmd_secrets_sync)
    sp.add_argument("environment", help="environment in kmcp.yaml secrets (e.g. staging)")
    sp.add_argument("--project-dir", default=".", help="project directory (default: .)")
    sp.add_argument("-n", "--namespace", help="namespace (default: secrets.ENV.namespace, else default)")
    _kube_flags(sp)

    p = command("port-forward", cmd_port_forward,
                "forward a local port to a Ready pod of an MCPServer (Kubernetes port-forward over WebSocket)",
                "kmcp port-forward my-mcp-server -n default --port 3000 --inspector")
    p.add_argument("name", help="the MCPServer")
    p.add_argument("-n", "--namespace", help="namespace (default: default)")
    p.add_argument("--port", type=int, default=3000, help="local port (default 3000)")
    p.add_argument("--pod-port", type=int, default=3000, help="port in the pod (default 3000)")
    p.add_argument("--address", default="127.0.0.1", help="local address (default 127.0.0.1)")
    p.add_argument("--inspector", action="store_true", help="also start the MCP Inspector (needs npx)")
    _kube_flags(p)

    p = command("dev", cmd_dev, "a local kmcp in one command: control plane, controller and an example MCP server",
                "kmcp dev up --check        # start everything, talk MCP to the example, stop\n"
                "  kmcp dev up --detach && kmcp get -A && kmcp dev down")
    dev_sub = p.add_subparsers(dest="dev_command", metavar="{up,down,echo-server}")

    def dev_command(name: str, func: Callable[[argparse.Namespace], int], help_text: str,
                    example: str) -> argparse.ArgumentParser:
        dp = dev_sub.add_parser(name, help=help_text, description=help_text, epilog=f"example:\n  {example}",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
        dp.set_defaults(func=func)
        return dp

    dp = dev_command("up", cmd_dev_up, "start a local control plane, the kmcp controller and an example MCPServer "
                     "served on 127.0.0.1 (Ctrl-C stops everything)", "kmcp dev up --check")
    dp.add_argument("--dir", help="state directory (default: ~/.cache/kmcp/dev)")
    dp.add_argument("--port", type=int, default=3000, help="port of the example's MCP endpoint (default 3000)")
    dp.add_argument("--check", action="store_true",
                    help="once Ready, list and call the example's tools with an MCP client, then stop (exit 0)")
    dp.add_argument("--detach", action="store_true", help="run in the background; stop with kmcp dev down")
    dp = dev_command("down", cmd_dev_down, "stop a kmcp dev up --detach", "kmcp dev down")
    dp.add_argument("--dir", help="state directory (default: ~/.cache/kmcp/dev)")
    dev_command("echo-server", cmd_dev_echo_server, "the bundled example stdio MCP server (echo, add)",
                "kmcp adapter --listen 127.0.0.1:3000 -- kmcp dev echo-server")

    p = command("completion", cmd_completion, "print a shell completion script",
                "source <(kmcp completion bash)    # or, in ~/.zshrc: source <(kmcp completion zsh)")
    p.add_argument("shell", choices=("bash", "zsh"))

    command("version", cmd_version, "print the version")
    return parser


# Modes with their own argument parsers, dispatched before argparse sees argv (their `--` and flags are theirs).
MODES: dict[str, str] = {
    "adapter": "kmcp.adapter.cli",
    "controller": "kmcp.controller.cli",
}


def main(argv: list[str]) -> int:
    if argv and argv[0] in MODES:
        import importlib

        module = importlib.import_module(MODES[argv[0]])
        result: int = module.main(argv[1:])
        return result
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        func: Callable[[argparse.Namespace], int] = args.func
        return func(args)
    except UsageError as error:
        print(f"kmcp: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
