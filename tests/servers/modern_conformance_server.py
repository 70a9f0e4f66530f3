"""The conformance suite's server for MCP revision 2026-07-28, on ``mcp`` 2.x (``MCPServer``): every tool, resource
and prompt the required server scenarios of ``@modelcontextprotocol/conformance@0.2.0-alpha.12 --requirements
2026-07-28`` call, by the names and with the results they check, plus what ``--requirements 2025-11-25`` calls.

Needs ``mcp`` 2.x, which cannot share a virtualenv with the project's ``mcp`` 1.x: ``scripts/setup`` builds
``.venv-mcp2`` for it. Runs over stdio by default (``.venv-mcp2/bin/python tests/servers/modern_conformance_server.py``,
what ``kmcp adapter`` wraps; the SDK's stdio server serves whichever era the first request opens), or over the SDK's
own Streamable HTTP with ``--http --port N`` (127.0.0.1, with an event store), so the suite can be run natively.

The 2026-07-28 interactions are multi-round-trip (``input_required`` results): a tool returns an
``InputRequiredResult`` naming what it needs, the client retries with ``inputResponses`` (and the echoed, sealed
``requestState``). The seal key is fixed (``KMCP_REQUEST_STATE_KEY`` overrides it), not per process, so a state minted
by one process of a pool is accepted by any other. The handshake-era tools (``test_sampling``, ``test_elicitation``…)
still ask the client with server→client requests, as the 2025-11-25 scenarios expect.
"""

from __future__ import annotations

import argparse
import base64
import io
import itertools
import json
import os
import struct
import wave
import zlib
from typing import Annotated, Any

import anyio
from mcp.server import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer, RequestStateSecurity
from mcp.server.mcpserver.prompts.base import Prompt, UserMessage
from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp.shared.exceptions import MCPError
from mcp.types import (
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    AudioContent,
    Completion,
    CompletionArgument,
    CompletionContext,
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    EmbeddedResource,
    EmptyResult,
    ImageContent,
    InputRequest,
    InputRequiredResult,
    JSONRPCMessage,
    ListRootsRequest,
    ListRootsResult,
    PromptReference,
    ResourceTemplateReference,
    SamplingMessage,
    SetLevelRequestParams,
    SubscribeRequestParams,
    TextContent,
    TextResourceContents,
    UnsubscribeRequestParams,
)
from pydantic import Field


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

# A fixed test key (>= 32 bytes): sealed requestState must survive a retry that lands on another process.
REQUEST_STATE_KEY = os.environ.get("KMCP_REQUEST_STATE_KEY", "kmcp-modern-conformance-server-request-state-key")


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


mcp = MCPServer("kmcp-modern-conformance-server", version="1.0.0", log_level="WARNING",
                request_state_security=RequestStateSecurity(keys=[REQUEST_STATE_KEY]))

# -- content tools (both eras) -----------------------------------------------------------------------------------


@mcp.tool()
def test_simple_text() -> str:
    """Returns a simple text response."""
    return "This is a simple text response for testing."


@mcp.tool()
def test_image_content() -> list[ImageContent]:
    """Returns a 1x1 red PNG image."""
    return [ImageContent(type="image", data=PNG_B64, mime_type="image/png")]


@mcp.tool()
def test_audio_content() -> list[AudioContent]:
    """Returns a short WAV clip."""
    return [AudioContent(type="audio", data=WAV_B64, mime_type="audio/wav")]


@mcp.tool()
def test_embedded_resource() -> list[EmbeddedResource]:
    """Returns an embedded text resource."""
    return [EmbeddedResource(type="resource", resource=TextResourceContents(
        uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content."))]


@mcp.tool()
def test_multiple_content_types() -> list[TextContent | ImageContent | EmbeddedResource]:
    """Returns text, an image and an embedded resource."""
    return [
        TextContent(type="text", text="Multiple content types test:"),
        ImageContent(type="image", data=PNG_B64, mime_type="image/png"),
        EmbeddedResource(type="resource", resource=TextResourceContents(
            uri="test://mixed-content-resource", mime_type="application/json",
            text=json.dumps({"test": "data", "value": 123}))),
    ]


@mcp.tool()
def test_error_handling() -> str:
    """Always fails (the result has isError: true)."""
    raise RuntimeError("This tool intentionally returns an error for testing")


@mcp.tool()
async def test_tool_with_progress(ctx: Context) -> str:
    """Reports progress 0, 50, 100 out of 100 (to the request's progressToken)."""
    for done in (0, 50, 100):
        await ctx.report_progress(done, 100, f"Completed step {done} of 100")
        if done < 100:
            await anyio.sleep(0.05)
    return "Tool with progress executed successfully"


async def _three_logs(ctx: Context) -> None:
    # A log entry reaches a 2026-07-28 client only when its request's _meta opted in with a logLevel;
    # on a handshake connection logging/setLevel decides.
    await ctx.log("info", "Tool execution started")
    await anyio.sleep(0.05)
    await ctx.log("info", "Tool processing data")
    await anyio.sleep(0.05)
    await ctx.log("info", "Tool execution completed")


@mcp.tool()
async def test_tool_with_logging(ctx: Context) -> str:
    """Sends three info log notifications while it runs."""
    await _three_logs(ctx)
    return "Tool with logging executed successfully"


@mcp.tool()
async def test_logging_tool(ctx: Context) -> str:
    """Logs three entries; a 2026-07-28 request without _meta logLevel must see none of them (server-stateless)."""
    await _three_logs(ctx)
    return "Logging tool executed"


@mcp.tool()
async def test_slow(seconds: float = 5.0) -> str:
    """Sleeps, then answers: a call to cancel (a closed stream, notifications/cancelled) or to time out."""
    await anyio.sleep(seconds)
    return f"slept {seconds}s"


@mcp.tool()
async def test_reconnection(ctx: Context) -> str:
    """Closes its SSE stream mid-call, then answers (SEP-1699 polling; a no-op without an event store)."""
    await ctx.close_sse_stream()
    await anyio.sleep(0.2)
    return "Reconnection test completed"


@mcp.tool(name="json_schema_2020_12_tool")
def json_schema_2020_12_tool(name: str = "", address: dict[str, Any] | None = None) -> str:
    """Tool with JSON Schema 2020-12 features (its inputSchema is set below, kept as written)."""
    return f"received name={name!r} address={address!r}"


# SEP-1613: the advertised inputSchema keeps $schema, $defs, $anchor, conditionals and additionalProperties.
mcp._tool_manager._tools["json_schema_2020_12_tool"].parameters = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {"address": {"$anchor": "addressDef", "type": "object",
                          "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
    "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"},
                   "contactMethod": {"type": "string", "enum": ["phone", "email"]},
                   "phone": {"type": "string"}, "email": {"type": "string"}},
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}

@mcp.tool()
def test_x_mcp_header(
        region: Annotated[str, Field(description="Mirrored by the client into the Mcp-Param-Region header",
                                     json_schema_extra={"x-mcp-header": "Region"})] = "<none>") -> str:
    """A tool with an x-mcp-header argument (SEP-2243): the SDK checks Mcp-Param-Region against it."""
    return f"region={region}"


# -- handshake-era interaction: server->client requests (the 2025-11-25 scenarios) -------------------------------


@mcp.tool()
async def test_sampling(prompt: str, ctx: Context) -> str:
    """Asks the client's model (sampling/createMessage) and returns its answer."""
    result = await ctx.session.create_message(
        messages=[SamplingMessage(role="user", content=TextContent(type="text", text=prompt))], max_tokens=100,
        related_request_id=ctx.request_id)
    content = result.content
    return f"LLM response: {content.text if isinstance(content, TextContent) else content}"


async def _elicit(ctx: Context, message: str, schema: dict[str, Any]) -> str:
    result = await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)
    return f"action={result.action}, content={json.dumps(result.content)}"


@mcp.tool()
async def test_elicitation(message: str, ctx: Context) -> str:
    """Asks the user (elicitation/create) for a username and an email."""
    answer = await _elicit(ctx, message, {
        "type": "object",
        "properties": {"username": {"type": "string", "description": "User's response"},
                       "email": {"type": "string", "description": "User's email address"}},
        "required": ["username", "email"]})
    return f"User response: {answer}"


@mcp.tool()
async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
    """Elicitation whose schema has a default for every primitive type (SEP-1034)."""
    answer = await _elicit(ctx, "Please review your profile", {"type": "object", "properties": {
        "name": {"type": "string", "default": "John Doe"},
        "age": {"type": "integer", "default": 30},
        "score": {"type": "number", "default": 95.5},
        "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
        "verified": {"type": "boolean", "default": True}}})
    return f"Elicitation completed: {answer}"


@mcp.tool()
async def test_elicitation_sep1330_enums(ctx: Context) -> str:
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


# -- 2026-07-28: server-stateless diagnostics --------------------------------------------------------------------


@mcp.tool()
async def test_missing_capability(ctx: Context) -> str:
    """Needs the client's sampling capability: without it, a top-level -32021 error naming {"sampling": {}}."""
    capabilities = ctx.client_capabilities
    if capabilities is None or capabilities.sampling is None:
        raise MCPError(code=MISSING_REQUIRED_CLIENT_CAPABILITY,
                       message="This tool requires the client 'sampling' capability",
                       data={"requiredCapabilities": {"sampling": {}}})
    return "Client declared sampling capability; proceeding."


@mcp.tool()
async def test_streaming_elicitation(ctx: Context) -> str | InputRequiredResult:
    """Logs, then asks for a confirmation the 2026-07-28 way: an input_required result, never a request mid-stream."""
    await ctx.log("info", "Preparing the confirmation")
    if ctx.input_responses and "confirm" in ctx.input_responses:
        return "Streaming elicitation confirmed"
    return InputRequiredResult(input_requests={"confirm": _confirm_request()})


def _dynamic() -> str:
    """Added and removed again by the trigger tools."""
    return "dynamic"


@mcp.tool()
async def test_trigger_tool_change(ctx: Context) -> str:
    """Changes the tool list and announces it on subscriptions/listen streams."""
    mcp.add_tool(_dynamic, name="test_dynamic_tool")
    mcp.remove_tool("test_dynamic_tool")
    await ctx.notify_tools_changed()
    return "tool list changed"


@mcp.tool()
async def test_trigger_prompt_change(ctx: Context) -> str:
    """Changes the prompt list and announces it on subscriptions/listen streams."""
    mcp.add_prompt(Prompt.from_function(_dynamic, name="test_dynamic_prompt", description="dynamic"))
    mcp.remove_prompt("test_dynamic_prompt")
    await ctx.notify_prompts_changed()
    return "prompt list changed"


@mcp.tool()
async def test_trigger_resource_update(ctx: Context) -> str:
    """Announces an update of test://watched-resource on subscriptions/listen streams."""
    await ctx.notify_resource_updated("test://watched-resource")
    return "resource updated"


# -- 2026-07-28: input_required results (SEP-2322, multi-round-trip) ---------------------------------------------

NAME_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def _ask_name(message: str = "What is your name?") -> ElicitRequest:
    return ElicitRequest(params=ElicitRequestFormParams(message=message, requested_schema=NAME_SCHEMA))


def _confirm_request() -> ElicitRequest:
    return ElicitRequest(params=ElicitRequestFormParams(message="Please confirm", requested_schema={
        "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}))


def _sample(text: str, max_tokens: int) -> CreateMessageRequest:
    return CreateMessageRequest(params=CreateMessageRequestParams(
        messages=[SamplingMessage(role="user", content=TextContent(type="text", text=text))], max_tokens=max_tokens))


def _elicited(answer: object, field: str) -> object:
    if isinstance(answer, ElicitResult) and answer.action == "accept" and answer.content:
        return answer.content.get(field)
    return None


@mcp.tool()
async def test_input_required_result_elicitation(ctx: Context) -> str | InputRequiredResult:
    """Round 1 asks for the user's name (key "user_name"); the retry with the answer greets them."""
    responses = ctx.input_responses or {}
    if "user_name" in responses:
        return f"Hello, {_elicited(responses['user_name'], 'name') or 'stranger'}!"
    return InputRequiredResult(input_requests={"user_name": _ask_name()})


@mcp.tool()
async def test_input_required_result_sampling(ctx: Context) -> str | InputRequiredResult:
    """Round 1 asks the client's model (key "capital_question"); the retry returns the model's text."""
    responses = ctx.input_responses or {}
    if "capital_question" in responses:
        answer = responses["capital_question"]
        text = answer.content.text if isinstance(answer, CreateMessageResult) and isinstance(
            answer.content, TextContent) else "?"
        return f"Model said: {text}"
    return InputRequiredResult(input_requests={"capital_question": _sample("What is the capital of France?", 100)})


@mcp.tool()
async def test_input_required_result_list_roots(ctx: Context) -> str | InputRequiredResult:
    """Round 1 asks for the client's roots (key "client_roots"); the retry names them."""
    responses = ctx.input_responses or {}
    if "client_roots" in responses:
        answer = responses["client_roots"]
        roots = [str(root.uri) for root in answer.roots] if isinstance(answer, ListRootsResult) else []
        return f"Client exposed {len(roots)} root(s): {', '.join(roots)}"
    return InputRequiredResult(input_requests={"client_roots": ListRootsRequest()})


@mcp.tool()
async def test_input_required_result_request_state(ctx: Context) -> str | InputRequiredResult:
    """Round 1 carries a requestState; the retry must echo it (unsealed here by the SDK) to get "state-ok"."""
    responses = ctx.input_responses or {}
    if "confirm" in responses and ctx.request_state == "awaiting-confirmation":
        return "state-ok: confirmation received"
    return InputRequiredResult(input_requests={"confirm": _confirm_request()}, request_state="awaiting-confirmation")


@mcp.tool()
async def test_input_required_result_multiple_inputs(ctx: Context) -> str | InputRequiredResult:
    """One round asking for three things at once: an elicitation, a sampling and the roots."""
    responses = ctx.input_responses or {}
    if {"user_name", "greeting", "client_roots"} <= responses.keys() and ctx.request_state == "multiple-inputs":
        return f"All inputs received: name={_elicited(responses['user_name'], 'name')}"
    return InputRequiredResult(
        input_requests={"user_name": _ask_name(), "greeting": _sample("Generate a greeting", 50),
                        "client_roots": ListRootsRequest()},
        request_state="multiple-inputs")


@mcp.tool()
async def test_input_required_result_multi_round(ctx: Context) -> str | InputRequiredResult:
    """Three rounds: name (step1), then favourite colour (step2), then the answer; the state says which round."""
    state = json.loads(ctx.request_state) if ctx.request_state else {"round": 0}
    responses = ctx.input_responses or {}
    if state.get("round") == 1 and "step1" in responses:
        color_schema = {"type": "object", "properties": {"color": {"type": "string"}}, "required": ["color"]}
        return InputRequiredResult(
            input_requests={"step2": ElicitRequest(params=ElicitRequestFormParams(
                message="Step 2: What is your favorite color?", requested_schema=color_schema))},
            request_state=json.dumps({"round": 2, "name": _elicited(responses["step1"], "name")}))
    if state.get("round") == 2 and "step2" in responses:
        return f"{state.get('name')} likes {_elicited(responses['step2'], 'color')}."
    # Round one, or an answer that does not fit the round: ask from the start.
    return InputRequiredResult(input_requests={"step1": _ask_name("Step 1: What is your name?")},
                               request_state=json.dumps({"round": 1}))


@mcp.tool()
async def test_input_required_result_tampered_state(ctx: Context) -> str | InputRequiredResult:
    """Round 1 mints a requestState; the SDK seals it, so an altered echo is refused before this runs again."""
    if ctx.request_state is None:
        return InputRequiredResult(input_requests={"confirm": _confirm_request()}, request_state="round-1")
    return f"state-ok: {ctx.request_state}"


@mcp.tool()
async def test_input_required_result_capabilities(ctx: Context) -> str | InputRequiredResult:
    """Asks only for what the client declared in _meta clientCapabilities (sampling and/or elicitation)."""
    responses = ctx.input_responses or {}
    if responses:
        return f"Received: {', '.join(sorted(responses))}"
    capabilities = ctx.client_capabilities
    requests: dict[str, InputRequest] = {}
    if capabilities is not None and capabilities.sampling is not None:
        requests["sample"] = _sample("Say hello", 50)
    if capabilities is not None and capabilities.elicitation is not None:
        requests["ask"] = _ask_name()
    if not requests:
        raise MCPError(code=MISSING_REQUIRED_CLIENT_CAPABILITY,
                       message="This tool needs the client's sampling or elicitation capability",
                       data={"requiredCapabilities": {"sampling": {}}})
    return InputRequiredResult(input_requests=requests, request_state="capability-gated")


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
def test_prompt_with_embedded_resource(resourceUri: str) -> list[UserMessage]:
    """A prompt embedding the resource it is given."""
    return [
        UserMessage(content=EmbeddedResource(type="resource", resource=TextResourceContents(
            uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing."))),
        UserMessage(content="Please process the embedded resource above."),
    ]


@mcp.prompt()
def test_prompt_with_image() -> list[UserMessage]:
    """A prompt with an image."""
    return [UserMessage(content=ImageContent(type="image", data=PNG_B64, mime_type="image/png")),
            UserMessage(content="Please analyze the image above.")]


@mcp.prompt()
async def test_input_required_result_prompt(ctx: Context) -> list[UserMessage] | InputRequiredResult:
    """prompts/get the 2026-07-28 way: round 1 asks for the context (key "user_context"), the retry uses it."""
    responses = ctx.input_responses or {}
    if "user_context" in responses:
        return [UserMessage(content=f"Use the following context: {_elicited(responses['user_context'], 'context')}")]
    return InputRequiredResult(input_requests={"user_context": ElicitRequest(params=ElicitRequestFormParams(
        message="What context should the prompt use?",
        requested_schema={"type": "object", "properties": {"context": {"type": "string"}}, "required": ["context"]}))})


# -- completions; the handshake-era logging/setLevel and resources/(un)subscribe ---------------------------------

COMPLETIONS = {"arg1": ["paris", "park", "party", "test-value"], "arg2": ["alpha", "beta"], "id": ["123", "456"]}


@mcp.completion()
async def complete(ref: PromptReference | ResourceTemplateReference, argument: CompletionArgument,
                   context: CompletionContext | None) -> Completion:
    values = [v for v in COMPLETIONS.get(argument.name, []) if v.startswith(argument.value)]
    return Completion(values=values, total=len(values), has_more=False)


subscriptions: set[str] = set()


async def _set_level(ctx: ServerRequestContext, params: SetLevelRequestParams) -> EmptyResult:
    return EmptyResult()


async def _subscribe(ctx: ServerRequestContext, params: SubscribeRequestParams) -> EmptyResult:
    subscriptions.add(str(params.uri))
    return EmptyResult()


async def _unsubscribe(ctx: ServerRequestContext, params: UnsubscribeRequestParams) -> EmptyResult:
    subscriptions.discard(str(params.uri))
    return EmptyResult()


# The SDK answers these only at handshake-era versions: a 2026-07-28 request for them is -32601 whatever is registered.
mcp._lowlevel_server.add_request_handler("logging/setLevel", SetLevelRequestParams, _set_level)
mcp._lowlevel_server.add_request_handler("resources/subscribe", SubscribeRequestParams, _subscribe)
mcp._lowlevel_server.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, _unsubscribe)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--http", action="store_true", help="serve the SDK's Streamable HTTP on 127.0.0.1:PORT/mcp")
    parser.add_argument("--port", type=int, default=3001)
    args = parser.parse_args()
    if not args.http:
        mcp.run("stdio")
    else:
        mcp.run("streamable-http", host="127.0.0.1", port=args.port, event_store=MemoryEventStore(),
                retry_interval=500)


if __name__ == "__main__":
    main()
