"""The handshake-era twin of tests/servers/modern_conformance_server.py, on ``mcp`` 1.x (FastMCP): the same tool,
resource and prompt names the 2026-07-28 conformance scenarios call, each doing the same thing the only way a
2025-era server can. This is what an adapter bridging a legacy stdio server to 2026-07-28 has to work with:

- where the modern server returns an ``input_required`` result, the twin asks the client with server->client
  requests during the call (``elicitation/create``, ``sampling/createMessage``, ``roots/list``) and answers when they
  return. Requests a round needs all at once are sent concurrently, so a bridge sees them pending together and can
  offer them in one ``inputRequests`` map; the request keys are the bridge's to choose (a legacy request has only an
  id). The twin never sees a ``requestState``: sealing, echo checks and tamper rejection are the bridge's;
- where the modern server publishes to ``subscriptions/listen`` streams, the twin sends the handshake-era
  ``notifications/tools/list_changed``, ``.../prompts/list_changed`` and ``notifications/resources/updated``, and
  advertises ``listChanged`` and ``subscribe``;
- ``test_missing_capability`` fails with a JSON-RPC error -32021 (the code means the same in every era) when the
  session's ``initialize`` declared no sampling capability; ``test_input_required_result_capabilities`` asks only
  for what ``initialize`` declared.

Everything else (content tools, resources, prompts, completions, logging/setLevel, resources/subscribe) is
tests/servers/conformance_server.py's, which passes the 0.1.16 suite; it is loaded from beside this file. Runs over
stdio by default, or natively over FastMCP's Streamable HTTP with ``--http PORT``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Annotated, Any

import anyio
from mcp.server.fastmcp import Context
from mcp.server.fastmcp.prompts.base import Message, UserMessage
from mcp.shared.exceptions import McpError, UrlElicitationRequiredError
from mcp.types import (
    CreateMessageResult,
    ElicitResult,
    ErrorData,
    ListRootsResult,
    SamplingMessage,
    ServerCapabilities,
    TextContent,
)
from pydantic import AnyUrl, Field


def _load_base() -> Any:
    spec = importlib.util.spec_from_file_location("conformance_server", Path(__file__).with_name(
        "conformance_server.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


base = _load_base()
mcp = base.mcp
mcp._mcp_server.name = "kmcp-legacy-conformance-twin"

MISSING_REQUIRED_CLIENT_CAPABILITY = -32021
NAME_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
CONFIRM_SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}


class ProtocolError(UrlElicitationRequiredError):
    """A JSON-RPC error out of a FastMCP 1.x tool. FastMCP turns every other exception into an ``isError`` result;
    this subclass rides the one path it lets through to the JSON-RPC error response, carrying its own code."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        McpError.__init__(self, ErrorData(code=code, message=message, data=data))


async def _ask(ctx: Context, message: str, schema: dict[str, Any]) -> ElicitResult:  # type: ignore[type-arg]
    return await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)


async def _sample(ctx: Context, text: str, max_tokens: int) -> CreateMessageResult:  # type: ignore[type-arg]
    return await ctx.session.create_message(
        messages=[SamplingMessage(role="user", content=TextContent(type="text", text=text))], max_tokens=max_tokens,
        related_request_id=ctx.request_id)


def _field(answer: ElicitResult, name: str) -> object:
    return answer.content.get(name) if answer.action == "accept" and answer.content else None


def _text(answer: CreateMessageResult) -> str:
    return answer.content.text if isinstance(answer.content, TextContent) else "?"


def _declared(ctx: Context, capability: str) -> bool:  # type: ignore[type-arg]
    params = ctx.session.client_params
    return params is not None and getattr(params.capabilities, capability, None) is not None


# -- the input_required tools, handshake-era -------------------------------------------------------------------


@mcp.tool(structured_output=False)
async def test_input_required_result_elicitation(ctx: Context) -> str:  # type: ignore[type-arg]
    """Asks for the user's name (elicitation/create), then greets them."""
    answer = await _ask(ctx, "What is your name?", NAME_SCHEMA)
    return f"Hello, {_field(answer, 'name') or 'stranger'}!"


@mcp.tool(structured_output=False)
async def test_input_required_result_sampling(ctx: Context) -> str:  # type: ignore[type-arg]
    """Asks the client's model (sampling/createMessage), then returns its text."""
    return f"Model said: {_text(await _sample(ctx, 'What is the capital of France?', 100))}"


@mcp.tool(structured_output=False)
async def test_input_required_result_list_roots(ctx: Context) -> str:  # type: ignore[type-arg]
    """Asks for the client's roots (roots/list), then names them."""
    answer: ListRootsResult = await ctx.session.list_roots()
    roots = [str(root.uri) for root in answer.roots]
    return f"Client exposed {len(roots)} root(s): {', '.join(roots)}"


@mcp.tool(structured_output=False)
async def test_input_required_result_request_state(ctx: Context) -> str:  # type: ignore[type-arg]
    """Asks for a confirmation; the call's own stack is its state, so answering it is "state-ok"."""
    answer = await _ask(ctx, "Please confirm", CONFIRM_SCHEMA)
    return f"state-ok: confirmation {answer.action}"


@mcp.tool(structured_output=False)
async def test_input_required_result_tampered_state(ctx: Context) -> str:  # type: ignore[type-arg]
    """Asks for a confirmation (a bridge must refuse a retry whose requestState it did not mint)."""
    answer = await _ask(ctx, "Please confirm", CONFIRM_SCHEMA)
    return f"state-ok: confirmation {answer.action}"


@mcp.tool(structured_output=False)
async def test_streaming_elicitation(ctx: Context) -> str:  # type: ignore[type-arg]
    """Logs, then asks for a confirmation with a server->client request mid-call."""
    await ctx.info("Preparing the confirmation")
    answer = await _ask(ctx, "Please confirm", CONFIRM_SCHEMA)
    return f"Streaming elicitation {answer.action}"


@mcp.tool(structured_output=False)
async def test_input_required_result_multiple_inputs(ctx: Context) -> str:  # type: ignore[type-arg]
    """Asks for a name, a greeting and the roots at once: three server->client requests in flight together."""
    answers: dict[str, Any] = {}

    async def keep(key: str, request: Any) -> None:
        answers[key] = await request

    async with anyio.create_task_group() as group:
        group.start_soon(keep, "user_name", _ask(ctx, "What is your name?", NAME_SCHEMA))
        group.start_soon(keep, "greeting", _sample(ctx, "Generate a greeting", 50))
        group.start_soon(keep, "client_roots", ctx.session.list_roots())
    return f"All inputs received: name={_field(answers['user_name'], 'name')}"


@mcp.tool(structured_output=False)
async def test_input_required_result_multi_round(ctx: Context) -> str:  # type: ignore[type-arg]
    """Asks for a name, then (after the answer) for a favourite colour, then answers."""
    name = _field(await _ask(ctx, "Step 1: What is your name?", NAME_SCHEMA), "name")
    color = _field(await _ask(ctx, "Step 2: What is your favorite color?", {
        "type": "object", "properties": {"color": {"type": "string"}}, "required": ["color"]}), "color")
    return f"{name} likes {color}."


@mcp.tool(structured_output=False)
async def test_input_required_result_capabilities(ctx: Context) -> str:  # type: ignore[type-arg]
    """Asks only for what the session's initialize declared (sampling and/or elicitation), concurrently."""
    asked: list[str] = []

    async def ask_sampling() -> None:
        await _sample(ctx, "Say hello", 50)
        asked.append("sample")

    async def ask_elicitation() -> None:
        await _ask(ctx, "What is your name?", NAME_SCHEMA)
        asked.append("ask")

    if not (_declared(ctx, "sampling") or _declared(ctx, "elicitation")):
        raise ProtocolError(MISSING_REQUIRED_CLIENT_CAPABILITY,
                            "This tool needs the client's sampling or elicitation capability",
                            {"requiredCapabilities": {"sampling": {}}})
    async with anyio.create_task_group() as group:
        if _declared(ctx, "sampling"):
            group.start_soon(ask_sampling)
        if _declared(ctx, "elicitation"):
            group.start_soon(ask_elicitation)
    return f"Received: {', '.join(sorted(asked))}"


@mcp.tool(structured_output=False)
async def test_missing_capability(ctx: Context) -> str:  # type: ignore[type-arg]
    """Needs the client's sampling capability: without it, a JSON-RPC error -32021 naming {"sampling": {}}."""
    if not _declared(ctx, "sampling"):
        raise ProtocolError(MISSING_REQUIRED_CLIENT_CAPABILITY, "This tool requires the client 'sampling' capability",
                            {"requiredCapabilities": {"sampling": {}}})
    return "Client declared sampling capability; proceeding."


@mcp.tool(structured_output=False)
async def test_logging_tool(ctx: Context) -> str:  # type: ignore[type-arg]
    """Logs three entries (a bridge must not pass them to a 2026-07-28 request that set no logLevel)."""
    for text in ("Tool execution started", "Tool processing data", "Tool execution completed"):
        await ctx.info(text)
        await anyio.sleep(0.05)
    return "Logging tool executed"


@mcp.tool(structured_output=False)
async def test_slow(seconds: float = 5.0) -> str:
    """Sleeps, then answers: a call to cancel (notifications/cancelled) or to time out."""
    await anyio.sleep(seconds)
    return f"slept {seconds}s"


@mcp.tool(structured_output=False)
def test_x_mcp_header(
        region: Annotated[str, Field(description="Mirrored by the client into the Mcp-Param-Region header",
                                     json_schema_extra={"x-mcp-header": "Region"})] = "<none>") -> str:
    """A tool with an x-mcp-header argument (SEP-2243); a 1.x server knows nothing of the header itself."""
    return f"region={region}"


# -- list changes and resource updates, as handshake-era notifications -------------------------------------------


def _dynamic() -> str:
    """Added and removed again by the trigger tools."""
    return "dynamic"


@mcp.tool(structured_output=False)
async def test_trigger_tool_change(ctx: Context) -> str:  # type: ignore[type-arg]
    """Changes the tool list and sends notifications/tools/list_changed."""
    mcp.add_tool(_dynamic, name="test_dynamic_tool")
    mcp.remove_tool("test_dynamic_tool")
    await ctx.session.send_tool_list_changed()
    return "tool list changed"


@mcp.tool(structured_output=False)
async def test_trigger_prompt_change(ctx: Context) -> str:  # type: ignore[type-arg]
    """Sends notifications/prompts/list_changed (FastMCP 1.x cannot remove a prompt, so the list stays as it is)."""
    await ctx.session.send_prompt_list_changed()
    return "prompt list changed"


@mcp.tool(structured_output=False)
async def test_trigger_resource_update(ctx: Context) -> str:  # type: ignore[type-arg]
    """Sends notifications/resources/updated for test://watched-resource."""
    await ctx.session.send_resource_updated(AnyUrl("test://watched-resource"))
    return "resource updated"


@mcp.prompt()
async def test_input_required_result_prompt(ctx: Context) -> list[Message]:  # type: ignore[type-arg]
    """Asks what context to use (elicitation/create), then builds the prompt from the answer."""
    answer = await ctx.session.elicit_form("What context should the prompt use?", {
        "type": "object", "properties": {"context": {"type": "string"}}, "required": ["context"]},
        related_request_id=ctx.request_id)
    return [UserMessage(content=f"Use the following context: {_field(answer, 'context')}")]


_base_capabilities = mcp._mcp_server.get_capabilities


def _capabilities(*args: Any, **kwargs: Any) -> ServerCapabilities:
    capabilities: ServerCapabilities = _base_capabilities(*args, **kwargs)  # resources.subscribe already set
    for kind in (capabilities.tools, capabilities.prompts, capabilities.resources):
        if kind is not None:
            kind.listChanged = True
    return capabilities


mcp._mcp_server.get_capabilities = _capabilities  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--http", type=int, metavar="PORT", help="serve Streamable HTTP on 127.0.0.1:PORT/mcp")
    args = parser.parse_args()
    if args.http is None:
        mcp.run("stdio")
    else:
        mcp.settings.port = args.http
        mcp.run("streamable-http")


if __name__ == "__main__":
    main()
