"""A dependency-free stdio MCP server for adapter tests: fast to start, with misbehaviours on demand.

Tools: echo(text), pid(), garbage(text) (prints non-JSON on stdout before answering), exit(code) (dies mid-call),
sleep(seconds), notify(text) (a log notification, then the answer), changed() (answers, then sends
tools/list_changed). ``--banner`` prints a non-JSON line at start.
"""

from __future__ import annotations

import json
import os
import sys
import time


def send(message: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def text_result(text: str) -> dict[str, object]:
    return {"content": [{"type": "text", "text": text}], "isError": False}


def main() -> None:
    if "--banner" in sys.argv:
        print("raw test server starting (not JSON)", flush=True)
    for line in sys.stdin:
        message = json.loads(line)
        method, request_id = message.get("method"), message.get("id")
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
