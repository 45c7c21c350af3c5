"""LSP surface of completions: ``textDocument/inlineCompletion`` (ghost text) and
``textDocument/completion`` (list items), as thin translations around
:meth:`tactful.completion.engine.CompletionEngine.complete`.

Owns the conversion of a :class:`~tactful.completion.engine.Suggestion` into LSP items (plain
functions, unit-tested without a server). Must not decide anything about what to show: that is
the completion engine's and the cascade's work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lsprotocol import types

from tactful.completion.engine import Suggestion
from tactful.lsp import protocol

if TYPE_CHECKING:
    from tactful.lsp.server import TactfulServer

#: Characters that make the client ask for list completions.
TRIGGER_CHARACTERS = [".", "(", " "]
_WORD_CHARS = "_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


async def suggest(
    ls: TactfulServer, uri: str, pos: types.Position, trigger: str, single_line: bool
) -> Suggestion | None:
    """Ask the completion engine for a suggestion at ``pos`` of the server's copy of ``uri``."""
    doc = ls.documents.get(uri)
    if doc is None or pos.line >= doc.line_count:
        return None
    ls.use_document(uri)
    offset = doc.offset_at(pos.line, pos.character)
    sugg = await ls.engine.complete(
        uri=uri,
        text=doc.text,
        offset=offset,
        language_id=doc.language_id,
        line=pos.line,
        character=pos.character,
        version=doc.version,
        trigger=trigger,
        single_line=single_line,
        current_version=lambda: doc.version,
        channel="list" if single_line else "inline",
    )
    if sugg is not None and ls.feedback is not None:
        ls.feedback.offered(sugg.id, uri, sugg.text)
    return sugg


def accept_command(suggestion_id: str, via: str | None = None) -> types.Command:
    """The item's accept command: ``[id]``, or ``[id, None, via]`` for a list item."""
    args: list[Any] = [suggestion_id] if via is None else [suggestion_id, None, via]
    return types.Command(title="Accept suggestion", command=protocol.CMD_ACCEPT, arguments=args)


def to_inline_items(sugg: Suggestion | None, pos: types.Position) -> types.InlineCompletionList:
    """A suggestion as LSP inline items: insert at the cursor (empty range)."""
    if sugg is None:
        return types.InlineCompletionList(items=[])
    return types.InlineCompletionList(
        items=[
            types.InlineCompletionItem(
                insert_text=sugg.text,
                range=types.Range(start=pos, end=pos),
                command=accept_command(sugg.id),
            )
        ]
    )


def to_completion_items(
    sugg: Suggestion | None, pos: types.Position, line_prefix: str
) -> types.CompletionList:
    """A suggestion as a list completion item that replaces the word being typed."""
    if sugg is None:
        return types.CompletionList(is_incomplete=True, items=[])
    word = len(line_prefix) - len(line_prefix.rstrip(_WORD_CHARS))
    word_text = line_prefix[len(line_prefix) - word :]
    start = types.Position(
        line=pos.line, character=max(0, pos.character - len(word_text.encode("utf-16-le")) // 2)
    )
    new_text = word_text + sugg.text
    label = new_text.strip().splitlines()[0][:60] if new_text.strip() else new_text
    return types.CompletionList(
        is_incomplete=True,
        items=[
            types.CompletionItem(
                label=label,
                kind=types.CompletionItemKind.Snippet,
                detail="tactful",
                documentation=new_text,  # plain text: every client can show it
                filter_text=new_text,
                sort_text="0",
                text_edit=types.TextEdit(
                    range=types.Range(start=start, end=pos), new_text=new_text
                ),
                insert_text_format=types.InsertTextFormat.PlainText,
                command=accept_command(sugg.id, protocol.ACCEPT_VIA_LIST),
            )
        ],
    )


def register(server: TactfulServer) -> None:
    """Register the inline and the list completion handlers on ``server``."""

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def on_inline_completion(
        ls: TactfulServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList:
        trigger = (
            "invoked"
            if params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
            else "automatic"
        )
        sugg = await suggest(
            ls, params.text_document.uri, params.position, trigger, single_line=False
        )
        return to_inline_items(sugg, params.position)

    @server.feature(
        types.TEXT_DOCUMENT_COMPLETION,
        types.CompletionOptions(trigger_characters=TRIGGER_CHARACTERS),
    )
    async def on_completion(
        ls: TactfulServer, params: types.CompletionParams
    ) -> types.CompletionList:
        doc = ls.documents.get(params.text_document.uri)
        if doc is None:
            return types.CompletionList(is_incomplete=True, items=[])
        pos = params.position
        line_prefix = doc.line_text(pos.line)[
            : doc.offset_at(pos.line, pos.character) - doc.offset_at(pos.line, 0)
        ]
        sugg = await suggest(ls, params.text_document.uri, pos, "invoked", single_line=True)
        return to_completion_items(sugg, pos, line_prefix)
