"""Model backends. ``types`` is the only module the LSP layer shares with them; it must not
import torch. ``hf`` holds the transformers implementation and imports torch lazily."""

from tactful.backend.types import Backend, GenerateRequest, Generation, LineScores, ModelError

__all__ = ["Backend", "GenerateRequest", "Generation", "LineScores", "ModelError"]
