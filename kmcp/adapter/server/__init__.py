"""The HTTP side: the h11 server with its fast path (http), helpers the transports share (httputil), and
forwarding to the replica that owns a session or a suspended call."""
