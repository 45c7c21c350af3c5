/**
 * When tactful's list completions (the suggest widget) are offered next to its ghost text, and
 * which list items are worth showing. Plain functions, no `vscode` import; unit-tested.
 *
 * With VS Code's default settings the suggest widget opens as you type (quick suggestions) and on
 * the server's trigger characters; a tactful item there offers the same text as the ghost text,
 * and Enter at the end of a line would take the item instead of inserting a newline. So by
 * default (`auto`) tactful offers list items only where VS Code shows no inline suggestions.
 */

/** `tactful.listCompletions`. */
export type ListMode = 'auto' | 'always' | 'off';

export const LIST_MODES: readonly ListMode[] = ['auto', 'always', 'off'];

export function listMode(value: unknown): ListMode {
  return LIST_MODES.includes(value as ListMode) ? (value as ListMode) : 'auto';
}

/**
 * Whether to ask the server for list items: `always` yes, `off` no, `auto` only when VS Code
 * does not show inline suggestions in this editor (`editor.inlineSuggest.enabled` off), since the
 * ghost text already offers the same suggestion.
 */
export function offerListItems(mode: ListMode, inlineSuggestEnabled: boolean): boolean {
  if (mode === 'always') return true;
  if (mode === 'off') return false;
  return !inlineSuggestEnabled;
}

/**
 * True when an item would only repeat what is already typed: its text, white space at the end
 * aside, is the text it replaces (the word before the cursor) or nothing at all. Such an item
 * adds nothing, and Enter on it would swallow the newline.
 */
export function repeatsTyped(insertText: string, replaced: string): boolean {
  const text = insertText.replace(/\s+$/, '');
  return text === '' || text === replaced.replace(/\s+$/, '');
}
