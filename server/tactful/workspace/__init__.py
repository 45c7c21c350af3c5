"""Repository context: a bounded index of the workspace's source files (definitions and
imports, tree-sitter), and the per-request choice of what other files bring into the prompt.

``files`` finds what may be read, ``index`` parses it, ``store`` keeps and persists it,
``imports`` resolves Python imports to files, ``select`` picks and renders the context,
``service`` runs it all in the background for the language server (``tactful.lsp.workspace``).
See docs/context.md.
"""
