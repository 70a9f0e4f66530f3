"""A dependency-free stdio MCP server for adapter tests: fast to start, with misbehaviours on demand.

Tools: echo(text), pid(), garbage(text) (prints non-JSON on stdout before answering), exit(code) (dies mid-call),
sleep(seconds), notify(text) (a log notification, then the answer), changed() (answers, then sends
tools/list_changed), silent() (never answers), null_error() (answers with an ``"id": null`` error, as a server
does for a line it cannot read), emit(lines) (prints each base64-decoded line verbatim, then answers),
surrogate() (answers with an escaped lone surrogate), progress(seconds, interval) (progress notifications, then
the answer), cancelled() (the request ids the client cancelled so far). A line that is not JSON (or not UTF-8)
gets a -32700 error with ``"id": null``, as JSON-RPC servers answer. ``--banner`` prints a non-JSON line at start.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time

PARSE_ERROR = {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}}


def send(message: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def text_result(text: str) -> dict[str, object]:
    return {"content": [{"type": "text", "text": text}], "isError": False}


def main() -> None:
    if "--banner" in sys.argv:
        print("raw test server starting (not JSON)", flush=True)
    cancelled: list[object] = []
    for line in sys.stdin.buffer:
        try:
            message = json.loads(line)
        except ValueError:  # bad JSON, or bytes that are not UTF-8
            send(PARSE_ERROR)
            continue
        if not isinstance(message, dict):
            send(PARSE_ERROR)
            continue
        method, request_id = message.get("method"), message.get("id")
        if method == "notifications/cancelled":
            cancelled.append((message.get("params") or {}).get("requestId"))
        if method is None or request_id is None:
            continue  # notifications and answers to our (never sent) requests
        params = message.get("params") or {}
        result: dict[str, object]
        if method == "initialize":
            result = {"protocolVersion": params.get("protocolVersion", "2025-06-18"),
                      "capabilities": {"tools": {}}, "serverInfo": {"name": "raw", "version": "1"}}
        elif method == "ping":
            result = {}
        elif method == "tools/call":
            name, args = params.get("name"), params.get("arguments") or {}
            if name == "echo":
                result = text_result(str(args.get("text", "")))
            elif name == "pid":
                result = text_result(str(os.getpid()))
            elif name == "garbage":
                print("### some library printed this to stdout ###", flush=True)
                result = text_result(str(args.get("text", "")))
            elif name == "exit":
                sys.stderr.write("exiting mid-call\n")
                sys.stderr.flush()
                os._exit(int(args.get("code", 3)))
            elif name == "sleep":
                time.sleep(float(args.get("seconds", 1)))
                result = text_result("slept")
            elif name == "silent":
                continue
            elif name == "null_error":
                send(PARSE_ERROR)
                continue
            elif name == "emit":
                for encoded in args.get("lines", []):
                    sys.stdout.buffer.write(base64.b64decode(encoded) + b"\n")
                sys.stdout.buffer.flush()
                result = text_result("emitted")
            elif name == "surrogate":
                result = text_result("\ud800")  # json.dumps writes it as the escape \ud800
            elif name == "progress":
                token = ((params.get("_meta") or {}).get("progressToken"))
                started = time.monotonic()
                step = 0
                while time.monotonic() - started < float(args.get("seconds", 1)):
                    time.sleep(float(args.get("interval", 0.2)))
                    step += 1
                    if token is not None:
                        send({"jsonrpc": "2.0", "method": "notifications/progress",
                              "params": {"progressToken": token, "progress": step}})
                result = text_result(f"{step} steps")
            elif name == "cancelled":
                result = text_result(json.dumps(cancelled))
            elif name == "changed":  # answer, then announce a changed tool list (for the standalone stream)
                send({"jsonrpc": "2.0", "id": request_id, "result": text_result("changing")})
                send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
                continue
            elif name == "notify":
                send({"jsonrpc": "2.0", "method": "notifications/message",
                      "params": {"level": "info", "data": str(args.get("text", ""))}})
                result = text_result("notified")
            else:
                send({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32602, "message": f"no tool {name}"}})
                continue
        else:
            send({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32601, "message": f"no method {method}"}})
            continue
        send({"jsonrpc": "2.0", "id": request_id, "result": result})


if __name__ == "__main__":
    main()
