"""The LSP surface: the server object, its lifecycle, and one thin handler module per feature."""
