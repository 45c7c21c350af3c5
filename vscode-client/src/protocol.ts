/**
 * tactful's custom LSP surface, mirrored from server/tactful/lsp/protocol.py (the single source of
 * truth). tests/unit/test_protocol_mirror_ts.py checks that every command id and notification
 * name of protocol.py appears here with the same value.
 */

// --- workspace/executeCommand ids ------------------------------------------------------------
/** Run by VS Code when an inline or list item is accepted. args: [suggestionId, acceptedLength?, via?] */
export const CMD_ACCEPT = 'tactful.accept';
/** The `via` argument of the accept command that list items carry ([id, null, 'list']). */
export const ACCEPT_VIA_LIST = 'list';
/** An explicit dismissal. args: [suggestionId] */
export const CMD_REJECT = 'tactful.reject';
/** Toggle completions. args: [enabled?] -> {enabled} */
export const CMD_TOGGLE = 'tactful.toggle';
/** Flag a document now. args: [uri] -> {flags: [...]} */
export const CMD_FLAG = 'tactful.flagDocument';
/** Server status. args: [] -> Status */
export const CMD_STATUS = 'tactful.status';
/** Where the feedback log lives. args: [] -> {path, enabled} */
export const CMD_LOG_LOCATION = 'tactful.logLocation';
/** Train the CDHF cascade from the user's own log. args: [] -> {modelDir, ...} */
export const CMD_TRAIN = 'tactful.train';
/** Write the replay report of the user's own log. args: [htmlPath?] -> {html} */
export const CMD_REPLAY_REPORT = 'tactful.replayReport';

export const ALL_COMMANDS = [
  CMD_ACCEPT,
  CMD_REJECT,
  CMD_TOGGLE,
  CMD_FLAG,
  CMD_STATUS,
  CMD_LOG_LOCATION,
  CMD_TRAIN,
  CMD_REPLAY_REPORT,
] as const;

// --- notifications -----------------------------------------------------------------------------
/** Server -> client: model state and session counters (payload: {@link Status}). */
export const STATUS = 'tactful/status';
/** Client -> server: an inline item was displayed. params: {item} */
export const DID_SHOW_COMPLETION = 'textDocument/didShowCompletion';
/** Client -> server: part of an inline item was accepted. params: {item, acceptedLength} */
export const DID_PARTIALLY_ACCEPT_COMPLETION = 'textDocument/didPartiallyAcceptCompletion';

// --- diagnostics -------------------------------------------------------------------------------
export const DIAGNOSTIC_SOURCE = 'tactful';
export const DIAGNOSTIC_CODE = 'line-anomaly';
export const DIAGNOSTIC_IDENTIFIER = 'tactful';
export const CODE_ACTION_TITLE = 'Replace with suggested line';

// --- payloads ----------------------------------------------------------------------------------
/** 'idle': the server has not started loading the model yet. */
export type ModelState = 'idle' | 'loading' | 'ready' | 'failed' | 'disabled';

/** Payload of the STATUS notification and result of CMD_STATUS. */
export interface Status {
  state: ModelState;
  model: string;
  message: string;
  enabled: boolean;
  shown: number;
  accepted: number;
  acceptanceRate: number | null;
  /** The show/hide cascade's run-time guard (null/absent: no guard, e.g. the cascade hides nothing). */
  cascadeGuard?: CascadeGuard | null;
}

/** The guard's state: is the cascade hiding, and how right has hiding been for this user. */
export interface CascadeGuard {
  state: 'hiding' | 'stricter' | 'off';
  target: number;
  accuracyWhenHiding: number | null;
  lowerBound: number;
  evidence: number;
  correct: number;
}

/** An LSP inline completion item as the server sent it (what didShow/didPartiallyAccept carry). */
export interface LspInlineItem {
  insertText: string;
  range?: { start: { line: number; character: number }; end: { line: number; character: number } };
  filterText?: string;
  command?: { title: string; command: string; arguments?: unknown[] };
}
