"""tactful: a language server for local AI code completions with tact."""

__version__ = "0.1.0"
