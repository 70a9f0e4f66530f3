"""``subscriptions/listen`` (2026-07-28), sans-IO: what a listen asks for, and the events that answer it.

A listen names the change notifications a client wants (``params.notifications``); the stream's first message is
``notifications/subscriptions/acknowledged`` with the subset the server honours, and every message on it carries
the listen request's own id under ``_meta["io.modelcontextprotocol/subscriptionId"]``. A handshake-era server
never sees a listen: the bridge serves it from the server's broadcast notifications (``*/list_changed``,
``notifications/resources/updated``), honouring what the server's ``initialize`` result advertises.
"""

from __future__ import annotations

import msgspec

from kmcp.adapter.protocol import era, jsonrpc
from kmcp.adapter.protocol.jsonrpc import Kind, Message, RequestId

ACKNOWLEDGED = "notifications/subscriptions/acknowledged"
TOOLS_CHANGED = "notifications/tools/list_changed"
PROMPTS_CHANGED = "notifications/prompts/list_changed"
RESOURCES_CHANGED = "notifications/resources/list_changed"
RESOURCE_UPDATED = "notifications/resources/updated"
CHANGE_METHODS = frozenset({TOOLS_CHANGED, PROMPTS_CHANGED, RESOURCES_CHANGED, RESOURCE_UPDATED})


class Filter(msgspec.Struct, rename="camel", omit_defaults=True):
    """``params.notifications`` of a listen (unknown members are ignored: later revisions may add kinds)."""

    tools_list_changed: bool = False
    prompts_list_changed: bool = False
    resources_list_changed: bool = False
    resource_subscriptions: list[str] = msgspec.field(default_factory=list)

    def wants(self, method: str, params: bytes) -> bool:
        if method == TOOLS_CHANGED:
            return self.tools_list_changed
        if method == PROMPTS_CHANGED:
            return self.prompts_list_changed
        if method == RESOURCES_CHANGED:
            return self.resources_list_changed
        if method == RESOURCE_UPDATED:
            return _uri(params) in self.resource_subscriptions
        return False


class _Listen(msgspec.Struct):
    notifications: Filter = msgspec.field(default_factory=Filter)


class _Uri(msgspec.Struct):
    uri: str | None = None


def _uri(params: bytes) -> str | None:
    try:
        return msgspec.json.decode(params or b"{}", type=_Uri).uri
    except msgspec.MsgspecError:
        return None


def read_filter(params: bytes) -> Filter:
    """The filter of a listen request; :class:`~kmcp.adapter.protocol.jsonrpc.JsonRpcError` when it is malformed."""
    try:
        return msgspec.json.decode(params or b"{}", type=_Listen).notifications
    except msgspec.MsgspecError as error:
        raise jsonrpc.JsonRpcError(jsonrpc.INVALID_PARAMS, f"Invalid params: params.notifications: {error}") \
            from None


class _Capability(msgspec.Struct):
    list_changed: bool = msgspec.field(default=False, name="listChanged")
    subscribe: bool = False


class _Capabilities(msgspec.Struct):
    tools: _Capability | None = None
    prompts: _Capability | None = None
    resources: _Capability | None = None


class _InitializeResult(msgspec.Struct):
    capabilities: _Capabilities = msgspec.field(default_factory=_Capabilities)


def honoured(wanted: Filter, initialize_result: bytes) -> Filter:
    """What a handshake-era server can deliver of ``wanted``: the kinds its ``initialize`` result advertises."""
    try:
        caps = msgspec.json.decode(initialize_result or b"{}", type=_InitializeResult).capabilities
    except msgspec.MsgspecError:
        caps = _Capabilities()

    def flag(capability: _Capability | None) -> bool:
        return capability is not None and capability.list_changed

    subscribe = caps.resources is not None and caps.resources.subscribe
    return Filter(wanted.tools_list_changed and flag(caps.tools), wanted.prompts_list_changed and flag(caps.prompts),
                  wanted.resources_list_changed and flag(caps.resources),
                  list(wanted.resource_subscriptions) if subscribe else [])


def acknowledgement(listen_id: RequestId, granted: Filter) -> Message:
    params = jsonrpc.encode({"_meta": {era.META_SUBSCRIPTION: listen_id}, "notifications": granted})
    return Message(Kind.NOTIFICATION, jsonrpc.notification_bytes(ACKNOWLEDGED, params), method=ACKNOWLEDGED,
                   params=params)


def tagged(message: Message, listen_id: RequestId) -> Message:
    """A server's change notification as an event of the listen ``listen_id`` (its ``_meta`` tag set)."""
    method = message.method or ""
    value = msgspec.json.decode(message.params) if message.params else {}
    if not isinstance(value, dict):
        value = {}
    meta = value.get("_meta")
    value["_meta"] = {**(meta if isinstance(meta, dict) else {}), era.META_SUBSCRIPTION: listen_id}
    params = jsonrpc.encode(value)
    return Message(Kind.NOTIFICATION, jsonrpc.notification_bytes(method, params), method=method, params=params)


def resource_request(method: str, uri: str) -> Message:
    """``resources/subscribe`` or ``resources/unsubscribe`` for a handshake-era server (id set by the sender)."""
    return jsonrpc.parse_message(jsonrpc.request_bytes(0, method, jsonrpc.encode({"uri": uri})))
