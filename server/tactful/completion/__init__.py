"""The completion path: context, the completion engine, post-processing."""
