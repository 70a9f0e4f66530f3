"""An MCP client made of the standard library alone, run inside a pod on the node (the kmcp image has Debian's python3
and nothing to import): for each URL a session over legacy HTTP+SSE (``.../sse``) or Streamable HTTP (``.../mcp``)
that lists the tools and calls ``echo``, then one JSON line per URL on stdout. It also looks up a name outside the
cluster, which the cluster DNS must not answer, and prints the pod's nameservers.

Kept as a file of the tests and mounted into the pod from a ConfigMap, so what runs there is what is read here.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
import urllib.parse
from collections.abc import Iterator
from typing import Any

PROTOCOL = "2025-06-18"
Obj = dict[str, Any]


def _initialize(protocol: str) -> Obj:
    return {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": protocol, "capabilities": {},
                       "clientInfo": {"name": "kmcp-dns-probe", "version": "1"}}}


_REQUESTS = ({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}},
             {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
              "params": {"name": "echo", "arguments": {"message": "found by name"}}})
_INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def _summary(url: str, answers: dict[int, Obj]) -> Obj:
    return {"url": url, "server": answers[1]["result"]["serverInfo"]["name"],
            "tools": sorted(t["name"] for t in answers[2]["result"]["tools"]),
            "echo": answers[3]["result"]["content"][0]["text"]}


def streamable(url: str) -> Obj:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=30)
    session = ""
    answers: dict[int, Obj] = {}
    for message in (_initialize(PROTOCOL), _INITIALIZED, *_REQUESTS):
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                   "MCP-Protocol-Version": PROTOCOL}
        if session:
            headers["Mcp-Session-Id"] = session
        conn.request("POST", parts.path, json.dumps(message), headers)
        resp = conn.getresponse()
        body = resp.read().decode()
        if resp.status >= 300:
            raise RuntimeError(f"POST {url} {message.get('method')}: HTTP {resp.status} {body[:200]}")
        session = resp.getheader("Mcp-Session-Id") or session
        if "id" in message:
            if (resp.getheader("Content-Type") or "").startswith("text/event-stream"):
                body = [line[5:] for line in body.splitlines() if line.startswith("data:")][-1]
            answers[int(message["id"])] = json.loads(body)
    conn.close()
    return _summary(url, answers)


def _events(resp: http.client.HTTPResponse) -> Iterator[tuple[str, str]]:
    event, data = "message", []
    while True:
        line = resp.readline().decode()
        if not line:
            return
        line = line.rstrip("\r\n")
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def legacy_sse(url: str) -> Obj:
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "", parts.port or 80
    stream = http.client.HTTPConnection(host, port, timeout=30)
    stream.request("GET", parts.path, headers={"Accept": "text/event-stream"})
    resp = stream.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"GET {url}: HTTP {resp.status}")
    events = _events(resp)
    kind, endpoint = next(events)
    if kind != "endpoint":
        raise RuntimeError(f"GET {url}: first event {kind!r}, not endpoint")
    post = http.client.HTTPConnection(host, port, timeout=30)
    answers: dict[int, Obj] = {}
    for message in (_initialize("2024-11-05"), _INITIALIZED, *_REQUESTS):
        post.request("POST", urllib.parse.urljoin(parts.path, endpoint), json.dumps(message),
                     {"Content-Type": "application/json"})
        answer = post.getresponse()
        answer.read()
        if answer.status >= 300:
            raise RuntimeError(f"POST {endpoint}: HTTP {answer.status}")
        if "id" in message:
            for kind, data in events:
                reply = json.loads(data)
                if kind == "message" and reply.get("id") == message["id"]:
                    answers[int(message["id"])] = reply
                    break
    post.close()
    stream.close()
    return _summary(url, answers)


def outside_name(name: str) -> str:
    try:
        return f"resolved to {socket.getaddrinfo(name, 80)[0][4][0]}"
    except socket.gaierror as err:
        return f"not resolved: {err.strerror}"


def main(urls: list[str]) -> int:
    with open("/etc/resolv.conf") as f:
        nameservers = [line.split()[1] for line in f if line.startswith("nameserver")]
    print(json.dumps({"nameservers": nameservers, "outside": outside_name("example.com")}), flush=True)
    for url in urls:
        print(json.dumps(legacy_sse(url) if url.endswith("/sse") else streamable(url)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
