"""Fill-in-the-middle prompt templates per model family, detected from the tokenizer's
special tokens. Plain strings in, plain strings out: no torch."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class FimTemplate:
    """How one model family spells a fill-in-the-middle prompt (prefix-suffix-middle order)."""

    family: str
    prefix_token: str
    suffix_token: str
    middle_token: str
    #: Text between the prefix token and the prefix, etc. (CodeLlama wants spaces).
    prefix_sep: str = ""
    suffix_sep: str = ""
    middle_sep: str = ""
    #: Tokens that end the middle part.
    stop_tokens: tuple[str, ...] = ()
    #: Suffix-prefix-middle order (Codestral: ``[SUFFIX]suffix[PREFIX]prefix``, no middle token).
    suffix_first: bool = False

    def render(self, prefix: str, suffix: str) -> str:
        """The prompt the model completes; the answer is what comes after it."""
        if self.suffix_first:
            return (
                f"{self.suffix_token}{self.suffix_sep}{suffix}"
                f"{self.prefix_token}{self.prefix_sep}{prefix}"
                f"{self.middle_token}{self.middle_sep}"
            )
        return (
            f"{self.prefix_token}{self.prefix_sep}{prefix}"
            f"{self.suffix_token}{self.suffix_sep}{suffix}"
            f"{self.middle_token}{self.middle_sep}"
        )

    def tokens(self) -> tuple[str, str, str]:
        return (self.prefix_token, self.suffix_token, self.middle_token)


STARCODER = FimTemplate(
    "starcoder",
    "<fim_prefix>",
    "<fim_suffix>",
    "<fim_middle>",
    stop_tokens=("<|endoftext|>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<file_sep>"),
)
QWEN_CODER = FimTemplate(
    "qwen2.5-coder",
    "<|fim_prefix|>",
    "<|fim_suffix|>",
    "<|fim_middle|>",
    stop_tokens=("<|endoftext|>", "<|fim_pad|>", "<|file_sep|>", "<|repo_name|>", "<|im_end|>"),
)
DEEPSEEK_CODER = FimTemplate(
    "deepseek-coder",
    "<｜fim▁begin｜>",
    "<｜fim▁hole｜>",
    "<｜fim▁end｜>",
    stop_tokens=("<|EOT|>", "<｜end▁of▁sentence｜>"),
)
# CodeLlama: "<PRE> {prefix} <SUF>{suffix} <MID>" (the tokens are spelled with a leading "▁").
CODELLAMA = FimTemplate(
    "codellama",
    "<PRE>",
    "<SUF>",
    "<MID>",
    prefix_sep=" ",
    suffix_sep="",
    middle_sep="",
    stop_tokens=("<EOT>", "</s>"),
)

# Codestral (Mistral's tokenizer): "[SUFFIX]{suffix}[PREFIX]{prefix}", the middle follows.
CODESTRAL = FimTemplate(
    "codestral", "[PREFIX]", "[SUFFIX]", "", suffix_first=True, stop_tokens=("</s>",)
)
# CodeLlama as prompted: "<PRE> {prefix} <SUF>{suffix} <MID>".
CODELLAMA_PROMPT = FimTemplate(
    "codellama", "<PRE>", " <SUF>", " <MID>", prefix_sep=" ", stop_tokens=CODELLAMA.stop_tokens
)

TEMPLATES = (QWEN_CODER, STARCODER, DEEPSEEK_CODER, CODELLAMA)
#: Template families by name (the ``engine.template`` setting); ``prefix-only``: no FIM.
FAMILIES: dict[str, FimTemplate | None] = {
    "starcoder": STARCODER,
    "qwen2.5-coder": QWEN_CODER,
    "deepseek-coder": DEEPSEEK_CODER,
    "codellama": CODELLAMA_PROMPT,
    "codestral": CODESTRAL,
    "prefix-only": None,
}


def template_for_model(name: str) -> FimTemplate | None:
    """The FIM template a served model's name implies (``auto``), or None (prefix-only): for an
    inference engine, whose tokenizer tactful cannot read."""
    n = name.lower().replace("_", "-")
    if "starcoder" in n:  # StarCoder, StarCoderBase, StarCoder2
        return STARCODER
    if "qwen" in n and "coder" in n:
        return QWEN_CODER
    if "deepseek" in n and "coder" in n:
        return DEEPSEEK_CODER
    if "codellama" in n or "code-llama" in n:
        return CODELLAMA_PROMPT
    if "codestral" in n:
        return CODESTRAL
    return None


def detect_fim(special_tokens: Iterable[str]) -> FimTemplate | None:
    """The FIM template whose three tokens are all in the vocabulary, or None (prefix-only)."""
    vocab = {t.lstrip("▁") for t in special_tokens} | set(special_tokens)
    for tpl in TEMPLATES:
        if all(tok in vocab for tok in tpl.tokens()):
            if tpl is CODELLAMA:
                # CodeLlama's middle part follows " <MID>"; render a space before it.
                return CODELLAMA_PROMPT
            return tpl
    return None
