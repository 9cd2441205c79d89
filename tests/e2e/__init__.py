"""End-to-end tests: the whole gateway on real sockets, driven by real clients."""
