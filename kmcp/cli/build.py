"""`kmcp build`: the project's container image, with Docker or Podman or, for a python project, without a daemon
(see :mod:`kmcp.commands.build`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from kmcp.cli.common import Commands
from kmcp.errors import EXIT_OK


def register(commands: Commands) -> None:
    p = commands.add("build", build_command, "build the project's container image with Docker or Podman",
                     "kmcp build --project-dir my-mcp-server -t my-mcp-server:latest --kind-load-cluster kind")
    p.add_argument("--project-dir", default=".", help="project directory with a Dockerfile (default: .)")
    p.add_argument("-t", "--tag", help="image tag (default: <name>:<version> from kmcp.yaml)")
    p.add_argument("--kind-load-cluster", metavar="NAME", help="load the image into this kind cluster")
    p.add_argument("--load-dev-node", nargs="?", const="", metavar="DIR",
                   help="load the image into the dev node's containerd (the one running here, or the node of "
                        "this cluster directory)")
    p.add_argument("--push", action="store_true", help="push the image after building it")
    p.add_argument("--platform", help="target platform, e.g. linux/amd64")
    p.add_argument("--dockerfile", default="Dockerfile", help="Dockerfile in the project (default: Dockerfile)")


def build_command(args: argparse.Namespace) -> int:
    from kmcp.commands.build import BuildRequest, build_image

    tag = build_image(BuildRequest(Path(args.project_dir), tag=args.tag, kind_load_cluster=args.kind_load_cluster,
                                   push=args.push, platform=args.platform, dockerfile=args.dockerfile,
                                   load_dev_node=args.load_dev_node is not None,
                                   dev_node=Path(args.load_dev_node) if args.load_dev_node else None))
    print(f"built {tag}")
    return EXIT_OK
