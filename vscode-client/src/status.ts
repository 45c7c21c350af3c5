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

export function formatRate(status: Pick<Status, 'shown' | 'accepted' | 'acceptanceRate'>): string {
  if (status.acceptanceRate === null || status.acceptanceRate === undefined || status.shown === 0) {
    return 'no suggestions shown yet';
  }
  return `${Math.round(status.acceptanceRate * 100)}% accepted (${status.accepted}/${status.shown})`;
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
      const rate =
        status.acceptanceRate === null || status.acceptanceRate === undefined || status.shown === 0
          ? ''
          : ` ${Math.round(status.acceptanceRate * 100)}%`;
      return { text: `$(sparkle) tactful: ${model}${rate}`, tooltip, severity: 'normal' };
    }
  }
}
