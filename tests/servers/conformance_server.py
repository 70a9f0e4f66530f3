"""The server the official MCP conformance suite (``@modelcontextprotocol/conformance``, server scenarios) expects:
the tools, resources, prompts and completions its scenarios call, by the names and with the results they check.

Runs over stdio by default (``python tests/servers/conformance_server.py``, what ``kmcp adapter`` wraps), or
natively over Streamable HTTP with ``--http PORT`` (FastMCP's own transport on 127.0.0.1, with an in-memory event
store so that SEP-1699 polling and ``Last-Event-ID`` resumption work), so the suite can be run against the same
server with and without the adapter.
"""

from __future__ import annotations

import argparse
import base64
import io
import itertools
import json
import struct
import wave
import zlib
from typing import Any

import anyio
from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.prompts.base import Message, UserMessage
from mcp.server.fastmcp.tools import Tool
from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp.types import (
    AudioContent,
    Completion,
    CompletionArgument,
    CompletionContext,
    ContentBlock,
    EmbeddedResource,
    ImageContent,
    JSONRPCMessage,
    LoggingLevel,
    PromptReference,
    ResourceTemplateReference,
    SamplingMessage,
    ServerCapabilities,
    TextContent,
    TextResourceContents,
)
from pydantic import AnyUrl


def _png_1x1_red() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixels = zlib.compress(b"\x00\xff\x00\x00")  # filter byte, then one red pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _wav_silence() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * 80)  # 10 ms of silence
    return buffer.getvalue()


PNG = _png_1x1_red()
PNG_B64 = base64.b64encode(PNG).decode()
WAV_B64 = base64.b64encode(_wav_silence()).decode()


class MemoryEventStore(EventStore):
    """Every event of every stream, in memory (a test server lives for one run)."""

    def __init__(self) -> None:
        self._events: list[tuple[EventId, StreamId, JSONRPCMessage | None]] = []
        self._ids = itertools.count(1)

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        event_id = str(next(self._ids))
        self._events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        position = next((i for i, (event_id, _, _) in enumerate(self._events) if event_id == last_event_id), None)
        if position is None:
            return None
        stream_id = self._events[position][1]
        for event_id, stream, message in self._events[position + 1:]:
            if stream == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


def _json_schema_tool() -> Tool:
    def json_schema_2020_12_tool(name: str = "", address: dict[str, Any] | None = None) -> str:
        return f"received name={name!r} address={address!r}"

    tool = Tool.from_function(json_schema_2020_12_tool, description="Tool with JSON Schema 2020-12 features")
    # SEP-1613: the advertised inputSchema must keep $schema, $defs and additionalProperties as written.
    tool.parameters = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {"address": {"type": "object",
                              "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
        "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
        "additionalProperties": False,
    }
    return tool


mcp = FastMCP("kmcp-conformance-server", tools=[_json_schema_tool()], event_store=MemoryEventStore(),
              retry_interval=500, host="127.0.0.1", log_level="WARNING")

# -- tools -------------------------------------------------------------------------------------------------------


@mcp.tool(structured_output=False)
def test_simple_text() -> str:
    """Returns a simple text response."""
    return "This is a simple text response for testing."


@mcp.tool(structured_output=False)
def test_image_content() -> list[ContentBlock]:
    """Returns a 1x1 red PNG image."""
    return [ImageContent(type="image", data=PNG_B64, mimeType="image/png")]


@mcp.tool(structured_output=False)
def test_audio_content() -> list[ContentBlock]:
    """Returns a short WAV clip."""
    return [AudioContent(type="audio", data=WAV_B64, mimeType="audio/wav")]


@mcp.tool(structured_output=False)
def test_embedded_resource() -> list[ContentBlock]:
    """Returns an embedded text resource."""
    return [EmbeddedResource(type="resource", resource=TextResourceContents(
        uri=AnyUrl("test://embedded-resource"), mimeType="text/plain", text="This is an embedded resource content."))]


@mcp.tool(structured_output=False)
def test_multiple_content_types() -> list[ContentBlock]:
    """Returns text, an image and an embedded resource."""
    return [
        TextContent(type="text", text="Multiple content types test:"),
        ImageContent(type="image", data=PNG_B64, mimeType="image/png"),
        EmbeddedResource(type="resource", resource=TextResourceContents(
            uri=AnyUrl("test://mixed-content-resource"), mimeType="application/json",
            text=json.dumps({"test": "data", "value": 123}))),
    ]


@mcp.tool(structured_output=False)
async def test_tool_with_logging(ctx: Context) -> str:  # type: ignore[type-arg]
    """Sends three info log notifications while it runs."""
    await ctx.info("Tool execution started")
    await anyio.sleep(0.05)
    await ctx.info("Tool processing data")
    await anyio.sleep(0.05)
    await ctx.info("Tool execution completed")
    return "Tool with logging executed successfully"


@mcp.tool(structured_output=False)
async def test_tool_with_progress(ctx: Context) -> str:  # type: ignore[type-arg]
    """Reports progress 0, 50, 100 out of 100."""
    for done in (0, 50, 100):
        await ctx.report_progress(done, 100)
        if done < 100:
            await anyio.sleep(0.05)
    return "Tool with progress executed successfully"


@mcp.tool(structured_output=False)
def test_error_handling() -> str:
    """Always fails (the result has isError: true)."""
    raise RuntimeError("This tool intentionally returns an error for testing")


@mcp.tool(structured_output=False)
async def test_sampling(prompt: str, ctx: Context) -> str:  # type: ignore[type-arg]
    """Asks the client's model (sampling/createMessage) and returns its answer."""
    result = await ctx.session.create_message(
        messages=[SamplingMessage(role="user", content=TextContent(type="text", text=prompt))], max_tokens=100,
        related_request_id=ctx.request_id)
    content = result.content
    return f"LLM response: {content.text if isinstance(content, TextContent) else content}"


async def _elicit(ctx: Context, message: str, schema: dict[str, Any]) -> str:  # type: ignore[type-arg]
    result = await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)
    return f"action={result.action}, content={json.dumps(result.content)}"


@mcp.tool(structured_output=False)
async def test_elicitation(message: str, ctx: Context) -> str:  # type: ignore[type-arg]
    """Asks the user (elicitation/create) for a username and an email."""
    answer = await _elicit(ctx, message, {
        "type": "object",
        "properties": {"username": {"type": "string", "description": "User's response"},
                       "email": {"type": "string", "description": "User's email address"}},
        "required": ["username", "email"]})
    return f"User response: {answer}"


@mcp.tool(structured_output=False)
async def test_elicitation_sep1034_defaults(ctx: Context) -> str:  # type: ignore[type-arg]
    """Elicitation whose schema has a default for every primitive type (SEP-1034)."""
    answer = await _elicit(ctx, "Please review your profile", {"type": "object", "properties": {
        "name": {"type": "string", "default": "John Doe"},
        "age": {"type": "integer", "default": 30},
        "score": {"type": "number", "default": 95.5},
        "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
        "verified": {"type": "boolean", "default": True}}})
    return f"Elicitation completed: {answer}"


@mcp.tool(structured_output=False)
async def test_elicitation_sep1330_enums(ctx: Context) -> str:  # type: ignore[type-arg]
    """Elicitation with the five enum shapes of SEP-1330."""
    answer = await _elicit(ctx, "Please pick some options", {"type": "object", "properties": {
        "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
        "titledSingle": {"type": "string", "oneOf": [
            {"const": "value1", "title": "First Option"}, {"const": "value2", "title": "Second Option"},
            {"const": "value3", "title": "Third Option"}]},
        "legacyEnum": {"type": "string", "enum": ["opt1", "opt2", "opt3"],
                       "enumNames": ["Option One", "Option Two", "Option Three"]},
        "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
        "titledMulti": {"type": "array", "items": {"anyOf": [
            {"const": "value1", "title": "First Choice"}, {"const": "value2", "title": "Second Choice"},
            {"const": "value3", "title": "Third Choice"}]}}}})
    return f"Elicitation completed: {answer}"


@mcp.tool(structured_output=False)
async def test_reconnection(ctx: Context) -> str:  # type: ignore[type-arg]
    """Closes its SSE stream mid-call, then answers (SEP-1699 polling; a no-op without an event store)."""
    await ctx.close_sse_stream()
    await anyio.sleep(0.2)
    return "Reconnection test completed"


# -- resources ---------------------------------------------------------------------------------------------------


@mcp.resource("test://static-text", mime_type="text/plain")
def static_text() -> str:
    """A static text resource."""
    return "This is the content of the static text resource."


@mcp.resource("test://static-binary", mime_type="image/png")
def static_binary() -> bytes:
    """A static binary resource (a 1x1 PNG)."""
    return PNG


@mcp.resource("test://watched-resource", mime_type="text/plain")
def watched_resource() -> str:
    """A resource clients may subscribe to."""
    return "Watched resource content."


@mcp.resource("test://template/{id}/data", mime_type="application/json")
def template_data(id: str) -> str:
    """Data for one id (a resource template)."""
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})


# -- prompts -----------------------------------------------------------------------------------------------------


@mcp.prompt()
def test_simple_prompt() -> str:
    """A prompt without arguments."""
    return "This is a simple prompt for testing."


@mcp.prompt()
def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
    """A prompt with two required arguments."""
    return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"


@mcp.prompt()
def test_prompt_with_embedded_resource(resourceUri: str) -> list[Message]:
    """A prompt embedding the resource it is given."""
    return [
        UserMessage(content=EmbeddedResource(type="resource", resource=TextResourceContents(
            uri=AnyUrl(resourceUri), mimeType="text/plain", text="Embedded resource content for testing."))),
        UserMessage(content="Please process the embedded resource above."),
    ]


@mcp.prompt()
def test_prompt_with_image() -> list[Message]:
    """A prompt with an image."""
    return [UserMessage(content=ImageContent(type="image", data=PNG_B64, mimeType="image/png")),
            UserMessage(content="Please analyze the image above.")]


# -- completions, logging level, subscriptions (the low-level server: FastMCP has no decorators for the last two) --

COMPLETIONS = {"arg1": ["paris", "park", "party", "test-value"], "arg2": ["alpha", "beta"], "id": ["123", "456"]}


@mcp.completion()
async def complete(ref: PromptReference | ResourceTemplateReference, argument: CompletionArgument,
                   context: CompletionContext | None) -> Completion:
    values = [v for v in COMPLETIONS.get(argument.name, []) if v.startswith(argument.value)]
    return Completion(values=values, total=len(values), hasMore=False)


lowlevel = mcp._mcp_server
log_level: list[LoggingLevel] = ["info"]
subscriptions: set[str] = set()


@lowlevel.set_logging_level()
async def set_level(level: LoggingLevel) -> None:
    log_level[0] = level


@lowlevel.subscribe_resource()
async def subscribe(uri: AnyUrl) -> None:
    subscriptions.add(str(uri))


@lowlevel.unsubscribe_resource()
async def unsubscribe(uri: AnyUrl) -> None:
    subscriptions.discard(str(uri))


_plain_capabilities = lowlevel.get_capabilities


def _capabilities(*args: Any, **kwargs: Any) -> ServerCapabilities:
    capabilities = _plain_capabilities(*args, **kwargs)
    if capabilities.resources is not None:  # the low-level server never advertises subscribe on its own
        capabilities.resources.subscribe = True
    return capabilities


lowlevel.get_capabilities = _capabilities  # type: ignore[method-assign]


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
