"""The HTTP side: the trio shell of the HTTP/1.1 server (http; its parsing and framing are protocol/http11), the
one outbound HTTP client (client), helpers the transports share (httputil), and forwarding to the replica that
owns a session or a suspended call."""
