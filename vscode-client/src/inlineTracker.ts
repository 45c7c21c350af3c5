/**
 * Which tactful inline suggestion is on screen, so the extension can tell the server that it
 * was shown (textDocument/didShowCompletion), partly accepted
 * (textDocument/didPartiallyAcceptCompletion) or dismissed (tactful.reject).
 *
 * VS Code's stable API has no "shown" or "partial accept" callbacks for inline completions, so the
 * extension observes them itself: an item returned by the server for the active editor is
 * "shown" (once per suggestion id); a partial accept is the extension's own wrapper around VS
 * Code's accept-next-word/line commands, measured by how far the cursor moved into the item.
 * Plain logic over offsets, no `vscode` import; unit-tested with node:test.
 */
import { CMD_ACCEPT, type LspInlineItem } from './protocol';

export interface TrackedItem {
  uri: string;
  item: LspInlineItem;
  suggestionId: string | undefined;
  /** Document offset where the item's range starts (its insertText replaces from here). */
  startOffset: number;
  /** Characters of insertText accepted so far through partial accepts. */
  acceptedLength: number;
}

/** The suggestion id in the arguments of a `tactful.accept` command (the first one), if any. */
function acceptArgId(args: unknown[]): string | undefined {
  const id = args[0];
  return typeof id === 'string' || typeof id === 'number' ? String(id) : undefined;
}

/** The suggestion id the server put in the item's accept command, if any. */
export function suggestionIdOf(item: LspInlineItem): string | undefined {
  const cmd = item.command;
  if (!cmd || cmd.command !== CMD_ACCEPT || !Array.isArray(cmd.arguments)) return undefined;
  return acceptArgId(cmd.arguments);
}

export class InlineTracker {
  private current: TrackedItem | undefined;
  private readonly shown = new Set<string>();
  private readonly shownOrder: string[] = [];
  /** Recently provided items by suggestion id: the one on screen may be an older one. */
  private readonly recent = new Map<string, TrackedItem>();

  constructor(
    private readonly rememberShown = 500,
    private readonly rememberProvided = 50,
  ) {}

  /** The server returned `item` (the first one VS Code will display) for `uri`. */
  provided(uri: string, item: LspInlineItem, startOffset: number): TrackedItem {
    const suggestionId = suggestionIdOf(item);
    const cur = this.current;
    if (cur && cur.uri === uri && suggestionId !== undefined && cur.suggestionId === suggestionId) {
      // The same suggestion again. At the same place: keep what was accepted of it so far.
      // Moved on (type-along after typing or a partial accept: the server sends what is left,
      // from the cursor): accepted lengths now count from the new start.
      if (cur.startOffset !== startOffset) cur.acceptedLength = 0;
      cur.item = item;
      cur.startOffset = startOffset;
      return cur;
    }
    this.current = { uri, item, suggestionId, startOffset, acceptedLength: 0 };
    if (suggestionId !== undefined) {
      this.recent.delete(suggestionId);
      this.recent.set(suggestionId, this.current);
      while (this.recent.size > this.rememberProvided) this.recent.delete(this.recent.keys().next().value as string);
    }
    return this.current;
  }

  get active(): TrackedItem | undefined {
    return this.current;
  }

  /** True the first time a suggestion id is reported shown; false for repeats and id-less items. */
  markShown(t: TrackedItem): boolean {
    if (t.suggestionId === undefined || this.shown.has(t.suggestionId)) return false;
    this.shown.add(t.suggestionId);
    this.shownOrder.push(t.suggestionId);
    while (this.shownOrder.length > this.rememberShown) this.shown.delete(this.shownOrder.shift() as string);
    return true;
  }

  /**
   * The item whose accept command is running with `args` (the server puts the suggestion id
   * first), when it was provided here and not yet reported shown: it was on screen, so report it
   * shown before the accept. VS Code may keep displaying an item it got earlier than the one
   * tracked as active, and a quick accept can beat the shown report's timer. Marks it shown.
   */
  acceptedUnreported(args: unknown[]): TrackedItem | undefined {
    const id = acceptArgId(args);
    const t = id === undefined ? undefined : this.recent.get(id);
    return t && this.markShown(t) ? t : undefined;
  }

  /**
   * After a partial accept left the cursor at `cursorOffset` in `uri`: the item and its total
   * accepted length when that grew, else undefined (nothing of a tactful item was accepted).
   */
  partiallyAccepted(uri: string, cursorOffset: number): { item: LspInlineItem; acceptedLength: number } | undefined {
    const cur = this.current;
    if (!cur || cur.uri !== uri) return undefined;
    const len = Math.max(0, Math.min(cur.item.insertText.length, cursorOffset - cur.startOffset));
    if (len <= cur.acceptedLength) return undefined;
    cur.acceptedLength = len;
    if (len >= cur.item.insertText.length) this.current = undefined; // nothing left on screen
    return { item: cur.item, acceptedLength: len };
  }

  /** The user dismissed the suggestion in `uri`: its id (to reject) if it was a tactful one. */
  dismissed(uri: string): string | undefined {
    const cur = this.current;
    if (!cur || cur.uri !== uri) return undefined;
    this.current = undefined;
    return cur.suggestionId;
  }

  /** The whole item was accepted (its command ran) or the document went away. */
  clear(uri?: string): void {
    if (uri === undefined || this.current?.uri === uri) this.current = undefined;
  }
}
