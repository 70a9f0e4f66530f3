"""The adapter's sans-IO core: JSON-RPC framing, the session state machine, session ids, the HTTP/1.1 server
connection (http11: the strict fast-path parser of httpfast, h11 for the rest) and the message multiplexer.
Nothing here imports trio, sockets, os or subprocess (a test enforces it): the I/O layers above feed it bytes and
messages, as h11 is fed."""
