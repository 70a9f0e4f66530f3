"""Files of a new Go project on the official Go MCP SDK, as string constants (they ship inside the zipapp).

Placeholders use ``str.format``; literal braces are doubled. Tools added later live in ``<name>_tool.go`` files
that register themselves from ``init()``, so ``kmcp add-tool`` never edits main.go.

The SDK version is the newest the Go module proxy serves (2026-12); from v1.8.0 on its stdio server answers both
eras, the ``initialize`` handshake and 2026-07-28's stateless ``server/discover`` + per-request ``_meta``, so a
scaffolded server needs nothing of its own for either.
"""

from __future__ import annotations

GO_SDK_MODULE = "github.com/modelcontextprotocol/go-sdk"
GO_SDK_VERSION = "v1.8.0"
GO_VERSION = "1.25"
BINARY_PATH = "/app/server"

MAIN_GO = '''\
// {name}: an MCP server on the official Go MCP SDK ({sdk_module}).
// Over stdio it serves both protocol eras: the initialize handshake (up to 2025-11-25) and 2026-07-28's
// stateless requests (server/discover, every request carrying its own _meta); the SDK picks by the first request.
//
// Run it over stdio:  go run .
// Add a tool:         kmcp add-tool my_tool --description "What it does"
package main

import (
	"context"
	"log"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// toolRegistrations holds the tools defined in *_tool.go files; each registers itself from init().
var toolRegistrations []func(*mcp.Server)

func registerTool(register func(*mcp.Server)) {{
	toolRegistrations = append(toolRegistrations, register)
}}

// EchoInput is the input schema of the echo tool.
type EchoInput struct {{
	Message string `json:"message" jsonschema:"the text to echo back"`
}}

// EchoOutput is the structured result of the echo tool.
type EchoOutput struct {{
	Message string `json:"message"`
}}

// Echo returns the message it was given.
func Echo(ctx context.Context, req *mcp.CallToolRequest, in EchoInput) (*mcp.CallToolResult, EchoOutput, error) {{
	return nil, EchoOutput{{Message: in.Message}}, nil
}}

func main() {{
	server := mcp.NewServer(&mcp.Implementation{{Name: {name_go}, Version: {version_go}}}, nil)
	mcp.AddTool(server, &mcp.Tool{{Name: "echo", Description: "Echo the message back."}}, Echo)
	for _, register := range toolRegistrations {{
		register(server)
	}}
	// stdio: the client (or kmcp's transport adapter in the pod) speaks MCP over stdin/stdout.
	if err := server.Run(context.Background(), &mcp.StdioTransport{{}}); err != nil {{
		log.Fatal(err)
	}}
}}
'''

TOOL_GO = '''\
package main

import (
	"context"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// {type_name}Input is the input schema of the {name} tool.
type {type_name}Input struct {{
	Text string `json:"text" jsonschema:"input of the tool"`
}}

// {type_name}Output is the structured result of the {name} tool.
type {type_name}Output struct {{
	Result string `json:"result"`
}}

// {type_name} handles the {name} tool. Replace this stub with the tool's logic.
func {type_name}(
	ctx context.Context, req *mcp.CallToolRequest, in {type_name}Input,
) (*mcp.CallToolResult, {type_name}Output, error) {{
	return nil, {type_name}Output{{Result: in.Text}}, nil
}}

func init() {{
	registerTool(func(server *mcp.Server) {{
		mcp.AddTool(server, &mcp.Tool{{Name: {name_go}, Description: {description_go}}}, {type_name})
	}})
}}
'''

GO_MOD = '''\
module {name}

go {go_version}

require {sdk_module} {sdk_version}
'''

DOCKERFILE = '''\
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum* ./
COPY *.go ./
RUN go mod tidy && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/server .

# The runtime image keeps a POSIX sh: kmcp's pod wraps the command in a small sh script to bridge stdio.
FROM alpine:3.22
COPY --from=build /out/server {binary_path}
USER 65532:65532
CMD ["{binary_path}"]
'''

GITIGNORE = '''\
/server
/{name}
.env
'''

DOCKERIGNORE = '''\
.git/
.env
'''

README_MD = '''\
# {name}

{description}

An MCP server on the official Go MCP SDK, scaffolded by `kmcp init go`. It serves MCP revision 2026-07-28
(stateless: `server/discover`, no `initialize`) and the handshake revisions up to 2025-11-25 over stdio.

## Run locally

```bash
go mod tidy
go run .          # speaks MCP over stdio
```

## Add a tool

```bash
kmcp add-tool my_tool --description "What it does"   # writes my_tool_tool.go
```

## Build and deploy

```bash
kmcp build --project-dir . -t {name}:latest --kind-load-cluster kind
kmcp deploy --file kmcp.yaml --image {name}:latest
```
'''
