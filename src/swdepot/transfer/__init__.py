"""The download engine: URL rules, protocol clients and the streaming sink."""
