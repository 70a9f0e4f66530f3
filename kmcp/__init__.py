"""kmcp: a Kubernetes control plane for MCP servers (controller, stdio adapter, developer CLI)."""

__version__ = "0.1.0"
