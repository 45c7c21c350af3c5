/**
 * The server's stderr in the output channel at each line's own level.
 *
 * vscode-languageclient writes every stderr line of the server as an error by default, so a
 * server warning or an info line would read as a failure. tactful's server logs lines like
 * `2026-12-07 10:40:37,941 WARNING tactful.flags: ...`; this module reads the level from them.
 * A line without one (a traceback's continuation) keeps the level of the line before it.
 */
import * as readline from 'node:readline';
import type * as stream from 'node:stream';
import type * as vscode from 'vscode';

export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';

const LEVELS: Record<string, Level> = {
  DEBUG: 'debug',
  INFO: 'info',
  WARNING: 'warn',
  ERROR: 'error',
  CRITICAL: 'error',
};
const LINE = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) /;

/** The level of a server log line, or undefined when the line carries none. */
export function levelOf(line: string): Level | undefined {
  const m = LINE.exec(line);
  return m ? LEVELS[m[1]] : undefined;
}

/** Levels for a sequence of lines: each line's own, else the one before it (else error). */
export function levelsOf(lines: readonly string[]): Level[] {
  let last: Level = 'error';
  return lines.map((line) => (last = levelOf(line) ?? last));
}

/** `stdioOptions` for the language client: stderr lines at their levels, stdout as info. */
export function stdioOptions(): {
  stdout: (input: stream.Readable, channel: vscode.LogOutputChannel) => void;
  stderr: (input: stream.Readable, channel: vscode.LogOutputChannel) => void;
} {
  const lines = (input: stream.Readable, each: (line: string) => void): void => {
    readline.createInterface({ input, crlfDelay: Infinity, terminal: false, historySize: 0 }).on('line', each);
  };
  return {
    stdout: (input, channel) => lines(input, (line) => channel.info(line)),
    stderr: (input, channel) => {
      let last: Level = 'error';
      lines(input, (line) => {
        last = levelOf(line) ?? last;
        channel[last](line);
      });
    },
  };
}
