"""Tools around the server: the demo, benchmarks, and a small LSP client."""
