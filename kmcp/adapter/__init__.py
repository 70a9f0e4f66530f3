"""``kmcp adapter``: a stdio MCP server behind Streamable HTTP and legacy HTTP+SSE, one process per session.

Entry points: ``kmcp.adapter.cli.main(argv)``; ``kmcp.adapter.app.serve_adapter(settings, launcher, shutdown)``;
launchers implement ``kmcp.adapter.stdio.launcher.Launcher``.
"""
