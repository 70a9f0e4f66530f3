package main

// A trivial in-process Streamable HTTP MCP endpoint (-serve ADDR): initialize, notifications and an echo
// tools/call answered directly, no server process behind it. It exists to show the load generator is not
// what bounds a gateway's numbers: loadgen against it must reach far more calls/s than any gateway does.

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

type trivialRequest struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params struct {
		ProtocolVersion string `json:"protocolVersion"`
		Arguments       struct {
			Message string `json:"message"`
		} `json:"arguments"`
	} `json:"params"`
}

func serveTrivial(addr string) error {
	http.HandleFunc("/mcp", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "DELETE" {
			return
		}
		body, err := io.ReadAll(r.Body)
		var req trivialRequest
		if err != nil || json.Unmarshal(body, &req) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if len(req.ID) == 0 {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		var result any
		switch req.Method {
		case "initialize":
			id := make([]byte, 16)
			rand.Read(id)
			w.Header().Set("Mcp-Session-Id", hex.EncodeToString(id))
			result = map[string]any{"protocolVersion": req.Params.ProtocolVersion, "capabilities": map[string]any{},
				"serverInfo": map[string]string{"name": "loadgen-trivial", "version": "1"}}
		case "tools/call":
			result = map[string]any{"content": []map[string]string{{"type": "text", "text": req.Params.Arguments.Message}}}
		default:
			http.Error(w, fmt.Sprintf("unknown method %q", req.Method), http.StatusBadRequest)
			return
		}
		reply, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": req.ID, "result": result})
		w.Header().Set("Content-Type", "application/json")
		w.Write(reply)
	})
	return http.ListenAndServe(addr, nil)
}
