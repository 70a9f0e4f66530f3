"""A small FastMCP stdio server for adapter tests: tools (echo, progress, sampling, crash, slow), a resource,
a prompt. Run as ``python tests/servers/fastmcp_server.py``."""

from __future__ import annotations

import os
import sys

import anyio
from mcp.server.fastmcp import Context, FastMCP
from mcp.types import SamplingMessage, TextContent

mcp = FastMCP("kmcp-test-server")


@mcp.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@mcp.tool()
def pid() -> int:
    """The server's process id (tests check one process per session)."""
    return os.getpid()


@mcp.tool()
async def count(steps: int, ctx: Context) -> str:  # type: ignore[type-arg]
    """Report progress ``steps`` times, then finish."""
    for step in range(1, steps + 1):
        await ctx.report_progress(step, steps, f"step {step}")
    return f"counted {steps}"


@mcp.tool()
async def ask(question: str, ctx: Context) -> str:  # type: ignore[type-arg]
    """Ask the client's model (sampling) and return its answer."""
    result = await ctx.session.create_message(
        messages=[SamplingMessage(role="user", content=TextContent(type="text", text=question))], max_tokens=50)
    content = result.content
    return f"model said: {content.text if isinstance(content, TextContent) else content}"


@mcp.tool()
async def log(text: str, ctx: Context) -> str:  # type: ignore[type-arg]
    """Send a log notification before answering."""
    await ctx.info(text)
    return "logged"


@mcp.tool()
async def sleep(seconds: float) -> str:
    """Sleep, then answer."""
    await anyio.sleep(seconds)
    return "slept"


@mcp.tool()
def crash(code: int = 3) -> str:
    """Exit the server process at once, mid-call."""
    sys.stderr.write("crashing on purpose\n")
    sys.stderr.flush()
    os._exit(code)


@mcp.resource("test://greeting")
def greeting() -> str:
    """A fixed text resource."""
    return "hello from the resource"


@mcp.prompt()
def review(code: str) -> str:
    """A prompt that asks for a code review."""
    return f"Please review this code:\n{code}"


if __name__ == "__main__":
    mcp.run("stdio")
