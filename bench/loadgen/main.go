// Command loadgen drives MCP servers over HTTP for kmcp's side-by-side benchmarks.
//
// Each of -c sessions initializes its own MCP session, then calls one tool in a closed loop until -d has
// passed; latencies of every call are kept so p50/p99 are exact. Transports: Streamable HTTP ("streamable",
// JSON or SSE responses), the 2024-11-05 HTTP+SSE transport ("sse") and MCP 2026-07-28 without sessions ("modern",
// "modern-auto": see modern.go, also for -first). Only loopback targets are accepted.
// Output is one JSON object on stdout.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type result struct {
	Transport  string  `json:"transport"`
	Sessions   int     `json:"sessions"`
	Seconds    float64 `json:"seconds"`
	Calls      int     `json:"calls"`
	Errors     int64   `json:"errors"`
	CrossTalk  int64   `json:"cross_talk"`
	Throughput float64 `json:"calls_per_second"`
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	OpenP50ms  float64 `json:"session_open_p50_ms"`
	FirstError string  `json:"first_error,omitempty"`
	// CPU of this process (user + system) over the timed loop only, so opening sessions is left out with -barrier.
	LoopCPUSeconds float64 `json:"loop_cpu_seconds"`
}

type rpcMessage struct {
	ID     json.RawMessage `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  json.RawMessage `json:"error"`
}

var (
	client     *http.Client
	errorCount atomic.Int64
	crossTalk  atomic.Int64
	firstError atomic.Value
)

func fail(err error) {
	errorCount.Add(1)
	firstError.CompareAndSwap(nil, err.Error())
}

func initializeBody(id int) []byte {
	return []byte(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"kmcp-loadgen","version":"1"}}}`, id))
}

func callBody(id int, tool, session string) []byte {
	return []byte(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"%s","arguments":{"message":"%s-%d"}}}`, id, tool, session, id))
}

// readResponse returns the JSON-RPC response with the wanted id from a JSON or SSE body.
func readResponse(resp *http.Response, want int) (rpcMessage, error) {
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return rpcMessage{}, fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		reader := bufio.NewReader(resp.Body)
		for {
			data, err := nextSSEData(reader)
			if err != nil {
				return rpcMessage{}, err
			}
			var msg rpcMessage
			if json.Unmarshal([]byte(data), &msg) == nil && string(msg.ID) == fmt.Sprint(want) {
				io.Copy(io.Discard, reader)
				return msg, nil
			}
		}
	}
	var msg rpcMessage
	if err := json.NewDecoder(resp.Body).Decode(&msg); err != nil {
		return msg, err
	}
	return msg, nil
}

// nextSSEData returns the data of the next SSE event (multi-line data joined with \n); comments are skipped.
func nextSSEData(r *bufio.Reader) (string, error) {
	var data []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if len(data) > 0 {
				return strings.Join(data, "\n"), nil
			}
			continue
		}
		if strings.HasPrefix(line, "data:") {
			data = append(data, strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
}

func nextSSEEvent(r *bufio.Reader) (string, string, error) {
	event, data := "message", []string{}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", "", err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if len(data) > 0 {
				return event, strings.Join(data, "\n"), nil
			}
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			data = append(data, strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
}

type session interface {
	call(id int) error
	close()
}

type streamableSession struct {
	endpoint, id, protocol, tool, name string
}

// via, when set (-via), is where a session's calls go after initialize: another replica, which must forward
// them to the one that holds the session (the forwarded hop).
var via string

func (s *streamableSession) post(body []byte) (*http.Response, error) {
	req, _ := http.NewRequest("POST", s.endpoint, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if s.id != "" {
		req.Header.Set("Mcp-Session-Id", s.id)
	}
	if s.protocol != "" {
		req.Header.Set("MCP-Protocol-Version", s.protocol)
	}
	return client.Do(req)
}

func openStreamable(endpoint, tool, name string) (session, error) {
	s := &streamableSession{endpoint: endpoint, tool: tool, name: name}
	resp, err := s.post(initializeBody(0))
	if err != nil {
		return nil, err
	}
	s.id = resp.Header.Get("Mcp-Session-Id")
	msg, err := readResponse(resp, 0)
	if err != nil {
		return nil, fmt.Errorf("initialize: %w", err)
	}
	var init struct {
		ProtocolVersion string `json:"protocolVersion"`
	}
	json.Unmarshal(msg.Result, &init)
	s.protocol = init.ProtocolVersion
	resp, err = s.post([]byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`))
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 202 && resp.StatusCode != 200 {
		return nil, fmt.Errorf("initialized notification: HTTP %d", resp.StatusCode)
	}
	if via != "" {
		s.endpoint = via
	}
	return s, nil
}

func checkEcho(msg rpcMessage, name string, id int) error {
	if len(msg.Error) > 0 {
		return fmt.Errorf("JSON-RPC error: %s", msg.Error)
	}
	if !bytes.Contains(msg.Result, []byte(fmt.Sprintf("%s-%d", name, id))) {
		crossTalk.Add(1)
		return fmt.Errorf("response for %s/%d carries another session's payload: %s", name, id, msg.Result)
	}
	return nil
}

func (s *streamableSession) call(id int) error {
	resp, err := s.post(callBody(id, s.tool, s.name))
	if err != nil {
		return err
	}
	msg, err := readResponse(resp, id)
	if err != nil {
		return err
	}
	return checkEcho(msg, s.name, id)
}

func (s *streamableSession) close() {
	if s.id == "" {
		return
	}
	req, _ := http.NewRequest("DELETE", s.endpoint, nil)
	req.Header.Set("Mcp-Session-Id", s.id)
	if resp, err := client.Do(req); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// stdioSession talks to a server process directly: the baseline with no gateway at all.
type stdioSession struct {
	cmd        *exec.Cmd
	stdin      io.WriteCloser
	stdout     *bufio.Reader
	tool, name string
}

func openStdio(command, tool, name string) (session, error) {
	fields := strings.Fields(command)
	cmd := exec.Command(fields[0], fields[1:]...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &stdioSession{cmd: cmd, stdin: stdin, stdout: bufio.NewReaderSize(stdout, 65536), tool: tool, name: name}
	if _, err := s.send(initializeBody(0), 0); err != nil {
		s.close()
		return nil, fmt.Errorf("initialize: %w", err)
	}
	if _, err := s.stdin.Write([]byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}` + "\n")); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *stdioSession) send(body []byte, id int) (rpcMessage, error) {
	if _, err := s.stdin.Write(append(body, '\n')); err != nil {
		return rpcMessage{}, err
	}
	for {
		line, err := s.stdout.ReadBytes('\n')
		if err != nil {
			return rpcMessage{}, err
		}
		var msg rpcMessage
		if json.Unmarshal(line, &msg) == nil && string(msg.ID) == fmt.Sprint(id) {
			return msg, nil
		}
	}
}

func (s *stdioSession) call(id int) error {
	msg, err := s.send(callBody(id, s.tool, s.name), id)
	if err != nil {
		return err
	}
	return checkEcho(msg, s.name, id)
}

func (s *stdioSession) close() {
	s.stdin.Close()
	s.cmd.Wait()
}

type sseSession struct {
	messageURL, tool, name string
	body                   io.Closer
	responses              chan rpcMessage
}

func openSSE(endpoint, tool, name string) (session, error) {
	resp, err := client.Get(endpoint)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: HTTP %d", endpoint, resp.StatusCode)
	}
	reader := bufio.NewReader(resp.Body)
	event, data, err := nextSSEEvent(reader)
	if err != nil || event != "endpoint" {
		resp.Body.Close()
		return nil, fmt.Errorf("no endpoint event (got %q): %v", event, err)
	}
	base, _ := url.Parse(endpoint)
	ref, err := url.Parse(strings.TrimSpace(data))
	if err != nil {
		resp.Body.Close()
		return nil, err
	}
	s := &sseSession{messageURL: base.ResolveReference(ref).String(), tool: tool, name: name, body: resp.Body,
		responses: make(chan rpcMessage, 16)}
	go func() {
		defer close(s.responses)
		for {
			_, data, err := nextSSEEvent(reader)
			if err != nil {
				return
			}
			var msg rpcMessage
			if json.Unmarshal([]byte(data), &msg) == nil && len(msg.ID) > 0 {
				s.responses <- msg
			}
		}
	}()
	if _, err := s.send(initializeBody(0), 0); err != nil {
		s.close()
		return nil, fmt.Errorf("initialize: %w", err)
	}
	if err := s.post([]byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *sseSession) post(body []byte) error {
	resp, err := client.Post(s.messageURL, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST message: HTTP %d", resp.StatusCode)
	}
	return nil
}

func (s *sseSession) send(body []byte, id int) (rpcMessage, error) {
	if err := s.post(body); err != nil {
		return rpcMessage{}, err
	}
	timeout := time.After(30 * time.Second)
	for {
		select {
		case msg, ok := <-s.responses:
			if !ok {
				return rpcMessage{}, errors.New("SSE stream closed")
			}
			if string(msg.ID) == fmt.Sprint(id) {
				return msg, nil
			}
		case <-timeout:
			return rpcMessage{}, errors.New("timed out waiting for the response on the SSE stream")
		}
	}
}

func (s *sseSession) call(id int) error {
	msg, err := s.send(callBody(id, s.tool, s.name), id)
	if err != nil {
		return err
	}
	return checkEcho(msg, s.name, id)
}

func (s *sseSession) close() { s.body.Close() }

func cpuSeconds() float64 {
	var usage syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &usage)
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano()).Seconds()
}

func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return float64(sorted[i].Microseconds()) / 1000
}

func main() {
	target := flag.String("url", "", "endpoint: http://127.0.0.1:PORT/mcp (streamable) or /sse (sse)")
	transport := flag.String("transport", "streamable", "streamable | sse | stdio | modern | modern-auto")
	command := flag.String("cmd", "", "with -transport stdio: the server command, one process per session")
	sessions := flag.Int("c", 1, "concurrent sessions")
	duration := flag.Duration("d", 5*time.Second, "how long to call (bounded: at most 120s)")
	maxCalls := flag.Int("n", 1000000, "stop after this many calls in total")
	tool := flag.String("tool", "echo", "tool to call; it must echo its 'message' argument")
	first := flag.Int("first", 0, "instead of a timed loop: this many new clients one after another (at most 200), "+
		"each on a fresh connection; reports the first call's time (see modern.go)")
	pause := flag.Duration("pause", 50*time.Millisecond, "with -first: idle time between two new clients")
	barrier := flag.Bool("barrier", false, "open every session first, then print \"ready\" on stderr and wait for a "+
		"line on stdin before the timed loop starts (so a caller can leave session opening out of its CPU figures)")
	flag.StringVar(&via, "via", "", "with -transport streamable: send each session's calls (after initialize) to "+
		"this URL instead, another replica that forwards them to the session's owner")
	serve := flag.String("serve", "", "instead of calling: serve a trivial in-process MCP echo endpoint on ADDR (/mcp)")
	flag.Parse()
	if *serve != "" {
		fmt.Fprintln(os.Stderr, serveTrivial(*serve))
		os.Exit(1)
	}
	if *transport == "stdio" {
		*target = *command
	} else if u, err := url.Parse(*target); err != nil || u.Hostname() == "" {
		fmt.Fprintln(os.Stderr, "loadgen: -url is required")
		os.Exit(2)
	} else if ip := net.ParseIP(u.Hostname()); (ip == nil && u.Hostname() != "localhost") || (ip != nil && !ip.IsLoopback()) {
		fmt.Fprintln(os.Stderr, "loadgen: only loopback targets are allowed")
		os.Exit(2)
	}
	if *duration > 120*time.Second {
		*duration = 120 * time.Second
	}
	client = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 4 * *sessions, MaxIdleConnsPerHost: 4 * *sessions, IdleConnTimeout: 30 * time.Second}}
	open := openStreamable
	switch *transport {
	case "sse":
		open = openSSE
	case "stdio":
		open = openStdio
	case "modern":
		open = openModern
	case "modern-auto":
		open = openModernAuto
	}
	if *first > 0 {
		if *first > 200 {
			*first = 200
		}
		json.NewEncoder(os.Stdout).Encode(measureFirst(open, *target, *tool, *transport, *first, *pause))
		return
	}
	var (
		mu        sync.Mutex
		latencies []time.Duration
		opens     []time.Duration
		total     atomic.Int64
		wg        sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(*duration)
	var (
		opened sync.WaitGroup
		gate   = make(chan struct{})
	)
	opened.Add(*sessions)
	if !*barrier {
		close(gate)
	}
	for i := 0; i < *sessions; i++ {
		wg.Add(1)
		go func(n int) {
			defer wg.Done()
			name := fmt.Sprintf("s%d", n)
			t0 := time.Now()
			s, err := open(*target, *tool, name)
			opened.Done()
			if err != nil {
				fail(err)
				return
			}
			opening := time.Since(t0)
			defer s.close()
			<-gate
			local := make([]time.Duration, 0, 4096)
			for id := 1; time.Now().Before(deadline) && total.Add(1) <= int64(*maxCalls); id++ {
				t := time.Now()
				if err := s.call(id); err != nil {
					fail(err)
					continue
				}
				local = append(local, time.Since(t))
			}
			mu.Lock()
			latencies = append(latencies, local...)
			opens = append(opens, opening)
			mu.Unlock()
		}(i)
	}
	cpu0 := cpuSeconds()
	if *barrier {
		opened.Wait()
		fmt.Fprintln(os.Stderr, "ready")
		bufio.NewReader(os.Stdin).ReadString('\n')
		cpu0 = cpuSeconds()
		start = time.Now()
		deadline = start.Add(*duration)
		close(gate)
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	sort.Slice(latencies, func(a, b int) bool { return latencies[a] < latencies[b] })
	sort.Slice(opens, func(a, b int) bool { return opens[a] < opens[b] })
	r := result{Transport: *transport, Sessions: *sessions, Seconds: elapsed, Calls: len(latencies),
		Errors: errorCount.Load(), CrossTalk: crossTalk.Load(), Throughput: float64(len(latencies)) / elapsed,
		P50ms: percentile(latencies, 0.50), P99ms: percentile(latencies, 0.99), OpenP50ms: percentile(opens, 0.5),
		LoopCPUSeconds: cpuSeconds() - cpu0}
	if v := firstError.Load(); v != nil {
		r.FirstError = v.(string)
	}
	json.NewEncoder(os.Stdout).Encode(r)
}
