"""The HTTP transport: the server protocol (timeouts, connection cap) and client addresses."""
