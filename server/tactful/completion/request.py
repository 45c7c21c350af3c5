"""The model call of a completion and the suggestion info of its answer: plain functions of the
context and the settings (unit-tested without a model). Must not call the model or keep state."""

from __future__ import annotations

from tactful.backend.types import GenerateRequest, Generation
from tactful.cascade.hooks import SuggestionInfo
from tactful.completion import postprocess as pp
from tactful.completion.context import CompletionContext
from tactful.config import Settings


def make_generate_request(
    ctx: CompletionContext, settings: Settings, uri: str | None, fim: bool
) -> GenerateRequest:
    """The model call for a context (plain function, unit-tested)."""
    cs = settings.completion

    def stop_here(text: str) -> bool:
        if "```" in text:
            return True
        if not ctx.multiline:
            # Only the rest of this line is shown (pp.single_line_only): once the model ends
            # the line, even before writing anything, what it writes next is thrown away.
            return "\n" in text
        if "\n" not in text.strip("\n"):
            return False
        # Only judge complete lines: the last one may still be growing.
        done = text[: text.rfind("\n")]
        return len(pp.cut_block_end(done + "\n", ctx)) < len(done.rstrip())

    return GenerateRequest(
        prefix=ctx.prefix,
        suffix=ctx.suffix if fim else "",
        max_new_tokens=cs.max_new_tokens if ctx.multiline else cs.single_line_max_tokens,
        single_line=not ctx.multiline,
        cache_key=uri if cs.prefix_reuse else None,
        use_fim=fim,
        preamble=ctx.preamble,
        guide_names=settings.context.guided_names and bool(ctx.preamble),
        stop=("<file_sep>", "<|file_sep|>") if ctx.preamble else (),
        should_stop=stop_here,
    )


def part_info(
    text: str, gen: Generation | None, model: str, seconds: float | None = None
) -> SuggestionInfo:
    """The suggestion info of ``text`` (post-processed) from the generation it came from, with
    the log-probabilities of the tokens that survived post-processing; ``seconds`` defaults to
    the generation's own time (set when it ends)."""
    tokens = list(gen.tokens) if gen is not None else []
    logprobs = list(gen.token_logprobs) if gen is not None else []
    n = min(len(tokens), len(logprobs))
    kept, acc = 0, 0
    for tok in tokens[:n]:
        if acc >= len(text):
            break
        acc += len(tok)
        kept += 1
    if seconds is None:
        seconds = gen.seconds if gen is not None else 0.0
    return SuggestionInfo(text, logprobs[:kept], tokens[:kept], "model", model, seconds)
