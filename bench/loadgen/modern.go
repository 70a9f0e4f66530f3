package main

// MCP revision 2026-07-28 (stateless) clients, and the first-call measurement.
//
// "modern": a client pinned to 2026-07-28 (what mcp 2.3.0's Client(url, mode="2026-07-28") does): no handshake,
// no session; every tools/call carries MCP-Protocol-Version, Mcp-Method, Mcp-Name and the params._meta envelope.
// "modern-auto": the same, after one server/discover probe when the client opens (Client(url) in auto mode).
//
// -first N: instead of a timed loop, N new clients one after another, each on a fresh TCP connection of its own,
// against an idle, warm gateway. For each: the time from the connection being ready (just before the client's
// first byte) to the answer of its first tools/call (handshake-era transports include their handshake), and the
// time of its second call on the same, warm connection: one round trip, the yardstick for the first.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"sort"
	"time"
)

const modernVersion = "2026-07-28"

func modernMeta() string {
	return `"_meta":{"io.modelcontextprotocol/protocolVersion":"` + modernVersion +
		`","io.modelcontextprotocol/clientInfo":{"name":"kmcp-loadgen","version":"1"},` +
		`"io.modelcontextprotocol/clientCapabilities":{}}`
}

type modernSession struct {
	endpoint, tool, name string
}

func (s *modernSession) post(method, name string, body []byte) (*http.Response, error) {
	req, _ := http.NewRequest("POST", s.endpoint, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", modernVersion)
	req.Header.Set("Mcp-Method", method)
	if name != "" {
		req.Header.Set("Mcp-Name", name)
	}
	return client.Do(req)
}

func openModern(endpoint, tool, name string) (session, error) {
	return &modernSession{endpoint: endpoint, tool: tool, name: name}, nil
}

func openModernAuto(endpoint, tool, name string) (session, error) {
	s := &modernSession{endpoint: endpoint, tool: tool, name: name}
	resp, err := s.post("server/discover", "", []byte(`{"jsonrpc":"2.0","id":0,"method":"server/discover","params":{`+
		modernMeta()+`}}`))
	if err != nil {
		return nil, err
	}
	msg, err := readResponse(resp, 0)
	if err != nil {
		return nil, fmt.Errorf("server/discover: %w", err)
	}
	if !bytes.Contains(msg.Result, []byte(modernVersion)) {
		return nil, fmt.Errorf("server/discover does not list %s: %s %s", modernVersion, msg.Result, msg.Error)
	}
	return s, nil
}

func (s *modernSession) call(id int) error {
	body := []byte(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"%s",`+
		`"arguments":{"message":"%s-%d"},%s}}`, id, s.tool, s.name, id, modernMeta()))
	resp, err := s.post("tools/call", s.tool, body)
	if err != nil {
		return err
	}
	msg, err := readResponse(resp, id)
	if err != nil {
		return err
	}
	return checkEcho(msg, s.name, id)
}

func (s *modernSession) close() {}

type firstResult struct {
	Transport    string  `json:"transport"`
	Clients      int     `json:"clients"`
	Errors       int64   `json:"errors"`
	FirstP50ms   float64 `json:"first_call_p50_ms"`
	FirstMinms   float64 `json:"first_call_min_ms"`
	FirstMaxms   float64 `json:"first_call_max_ms"`
	SecondP50ms  float64 `json:"second_call_p50_ms"`
	RoundTrips   float64 `json:"first_over_second"`
	FirstError   string  `json:"first_error,omitempty"`
	PauseSeconds float64 `json:"pause_seconds"`
}

// measureFirst runs n new clients one after another, each with a connection of its own.
func measureFirst(open func(string, string, string) (session, error), target, tool, transport string, n int,
	pause time.Duration) firstResult {
	var firsts, seconds []time.Duration
	for i := 0; i < n; i++ {
		var ready time.Time
		dialer := &net.Dialer{}
		client = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: 1,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				conn, err := dialer.DialContext(ctx, network, addr)
				if ready.IsZero() {
					ready = time.Now()
				}
				return conn, err
			}}}
		name := fmt.Sprintf("f%d", i)
		s, err := open(target, tool, name)
		if err == nil {
			err = s.call(1)
		}
		if err != nil {
			fail(err)
			if s != nil {
				s.close()
			}
			continue
		}
		firsts = append(firsts, time.Since(ready))
		t := time.Now()
		if err := s.call(2); err != nil {
			fail(err)
		} else {
			seconds = append(seconds, time.Since(t))
		}
		s.close()
		client.CloseIdleConnections()
		time.Sleep(pause) // let the gateway go idle again: every client is a new one arriving at a quiet gateway
	}
	sort.Slice(firsts, func(a, b int) bool { return firsts[a] < firsts[b] })
	sort.Slice(seconds, func(a, b int) bool { return seconds[a] < seconds[b] })
	r := firstResult{Transport: transport, Clients: len(firsts), Errors: errorCount.Load(),
		FirstP50ms: percentile(firsts, 0.5), SecondP50ms: percentile(seconds, 0.5), PauseSeconds: pause.Seconds()}
	if len(firsts) > 0 {
		r.FirstMinms = percentile(firsts, 0)
		r.FirstMaxms = percentile(firsts, 1)
	}
	if r.SecondP50ms > 0 {
		r.RoundTrips = r.FirstP50ms / r.SecondP50ms
	}
	if v := firstError.Load(); v != nil {
		r.FirstError = v.(string)
	}
	return r
}
