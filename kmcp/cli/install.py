"""`kmcp install` and `kmcp uninstall`: the CRD and the controller, into and out of a cluster (see
:mod:`kmcp.commands.install`)."""

from __future__ import annotations

import argparse

from kmcp.cli.common import Commands, kube_flags, print_objects, seconds
from kmcp.errors import EXIT_OK


def register(commands: Commands) -> None:
    p = commands.add("install", install_command, "install the MCPServer CRD and the kmcp controller into a cluster",
                     "kmcp install --namespace kmcp-system --version 0.1.0 --no-wait")
    p.add_argument("-n", "--namespace", default="kmcp-system",
                   help="namespace of the controller (default: kmcp-system)")
    p.add_argument("--image", help="controller image (default: the kmcp controller image of this version)")
    p.add_argument("--version", help="controller image tag, e.g. 0.1.0 (ignored with --image)")
    kube_flags(p)
    p.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                   help="wait until the controller Deployment is Available (default: wait)")
    p.add_argument("--timeout", type=seconds, default=300.0, help="how long to wait, e.g. 90s or 5m (default 5m)")
    p.add_argument("--dry-run", action="store_true", help="print the objects instead of applying them")
    p.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml", help="--dry-run format")

    p = commands.add("uninstall", uninstall_command,
                     "remove the kmcp controller and the MCPServer CRD from a cluster",
                     "kmcp uninstall --namespace kmcp-system --keep-crd")
    p.add_argument("-n", "--namespace", default="kmcp-system",
                   help="namespace of the controller (default: kmcp-system)")
    kube_flags(p)
    p.add_argument("--keep-crd", action="store_true",
                   help="keep the CRD and the MCPServers (deleting it deletes every MCPServer and what runs them); "
                        "warns how many are left without a controller")
    p.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                   help="wait until the objects are gone (default: wait)")
    p.add_argument("--timeout", type=seconds, default=120.0,
                   help="how long to wait for the MCPServers, then for the objects, to be gone (default 2m)")
    p.add_argument("--remove-finalizers", action="store_true",
                   help="if no controller finalizes the deleted MCPServers, delete their auth ClusterRoleBindings "
                        "and remove kmcp's finalizer yourself")


def install_command(args: argparse.Namespace) -> int:
    from kmcp.commands.cluster import run_with_kube
    from kmcp.commands.install import InstallRequest, image_for, objects_for, run_install

    request = InstallRequest(namespace=args.namespace, image=image_for(args.image, args.version),
                             wait=args.wait, timeout=args.timeout)
    if args.dry_run:
        print_objects(objects_for(request), args.output)
        return EXIT_OK
    run_with_kube(args.kubeconfig, lambda client: run_install(client, request))
    return EXIT_OK


def uninstall_command(args: argparse.Namespace) -> int:
    from kmcp.commands.cluster import run_with_kube
    from kmcp.commands.install import InstallRequest, run_uninstall

    request = InstallRequest(namespace=args.namespace, wait=args.wait, timeout=args.timeout,
                             include_crd=not args.keep_crd, remove_finalizers=args.remove_finalizers)
    run_with_kube(args.kubeconfig, lambda client: run_uninstall(client, request))
    return EXIT_OK
