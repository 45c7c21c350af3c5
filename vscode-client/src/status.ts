/**
 * What the status bar item says for a server status: text, tooltip and colour class.
 * Plain functions (no `vscode` import), unit-tested with node:test.
 */
import type { Status } from './protocol';

export type ClientPhase = 'starting' | 'running' | 'stopped' | 'startFailed';

export interface StatusView {
  text: string;
  tooltip: string;
  /** `error` and `warning` map to the status bar's error/warning background. */
  severity: 'normal' | 'warning' | 'error';
}

/** Short model name for the status bar: last path component of a folder or hub id. */
export function shortModelName(model: string): string {
  const trimmed = model.replace(/[\\/]+$/, '');
  const last = trimmed.split(/[\\/]/).pop() ?? trimmed;
  return last || 'model';
}

/**
 * The acceptance rate with its counts, as the server reports them: "38% (3/8)"; undefined when
 * nothing was shown yet (no rate in the payload). The counts are left out when the payload has none.
 */
export function shortRate(status: Pick<Status, 'shown' | 'accepted' | 'acceptanceRate'>): string | undefined {
  const rate = status.acceptanceRate;
  if (typeof rate !== 'number' || !Number.isFinite(rate)) return undefined;
  const pct = `${Math.round(rate * 100)}%`;
  return typeof status.accepted === 'number' && typeof status.shown === 'number' ? `${pct} (${status.accepted}/${status.shown})` : pct;
}

export function formatRate(status: Pick<Status, 'shown' | 'accepted' | 'acceptanceRate'>): string {
  const rate = shortRate(status);
  if (rate === undefined) return 'no suggestions shown yet';
  return rate.replace(/^(\S+)/, '$1 accepted');
}

const GUARD_STATES: Record<string, string> = {
  hiding: 'hiding suggestions it expects you to reject',
  stricter: 'backed off: hiding fewer (it was wrong too often for you)',
  off: 'backed off: hiding nothing (it was wrong too often for you)',
};

/**
 * The show/hide filter's line for the tooltip, from the guard in the payload; undefined without
 * one. E.g. "Show/hide filter: hiding suggestions it expects you to reject; right 18 of 20 times
 * it hid (90%, target 95%)".
 */
export function guardLine(status: Pick<Status, 'cascadeGuard'>): string | undefined {
  const g = status.cascadeGuard;
  if (!g || typeof g !== 'object') return undefined;
  const what = GUARD_STATES[g.state] ?? g.state;
  const target = `target ${Math.round(g.target * 100)}%`;
  const record =
    typeof g.accuracyWhenHiding === 'number' && g.evidence > 0
      ? `right ${g.correct} of ${g.evidence} times it hid (${Math.round(g.accuracyWhenHiding * 100)}%, ${target})`
      : `no evidence on you yet (${target})`;
  return `Show/hide filter: ${what}; ${record}`;
}

export function statusView(phase: ClientPhase, status: Status | undefined, progress?: string): StatusView {
  if (phase === 'startFailed') {
    return { text: '$(error) tactful', tooltip: 'tactful: the language server could not start. Click for options.', severity: 'error' };
  }
  if (phase === 'stopped') {
    return { text: '$(debug-stop) tactful', tooltip: 'tactful: the language server is stopped. Click for options.', severity: 'warning' };
  }
  if (phase === 'starting' || status === undefined) {
    return { text: '$(sync~spin) tactful: starting', tooltip: 'tactful: starting the language server', severity: 'normal' };
  }
  const model = shortModelName(status.model || 'model');
  const lines = [`tactful: ${status.state}`, `Model: ${status.model || '(default)'}`];
  if (status.message) lines.push(status.message);
  lines.push(`Completions: ${status.enabled ? 'on' : 'off'}`);
  lines.push(`This session: ${formatRate(status)}`);
  const guard = guardLine(status);
  if (guard) lines.push(guard);
  lines.push('Click for the tactful menu.');
  const tooltip = lines.join('\n');
  switch (status.state) {
    case 'idle':
      return { text: '$(sync~spin) tactful: starting', tooltip, severity: 'normal' };
    case 'loading':
      return { text: `$(sync~spin) tactful: loading ${model}${progress ? ` ${progress}` : ''}`, tooltip, severity: 'normal' };
    case 'failed':
      return { text: `$(error) tactful: ${model} failed`, tooltip, severity: 'error' };
    case 'disabled':
      return { text: `$(circle-slash) tactful: off`, tooltip, severity: 'normal' };
    case 'ready':
    default: {
      if (!status.enabled) return { text: `$(circle-slash) tactful: off (${model})`, tooltip, severity: 'normal' };
      const rate = shortRate(status);
      return { text: `$(sparkle) tactful: ${model}${rate === undefined ? '' : ` ${rate}`}`, tooltip, severity: 'normal' };
    }
  }
}
