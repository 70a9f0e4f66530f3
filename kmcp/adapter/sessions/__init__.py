"""What answers client messages: handshake-era sessions (runtime), shared mode, the 2026-07-28 stateless pool,
and the inbox they deliver into."""
