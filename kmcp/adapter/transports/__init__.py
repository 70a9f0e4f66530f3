"""The MCP transports over HTTP: Streamable HTTP at /mcp (both eras), legacy SSE at /sse, WebSocket at /ws."""
