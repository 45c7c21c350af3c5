/**
 * How the extension starts `tactful serve`, and what it tells the user when that fails.
 * Plain functions over plain data (no `vscode` import) so they are unit-tested with node:test.
 */
import * as fs from 'fs';
import * as path from 'path';

export interface ServerSettings {
  /** `tactful.server.command`: executable name on PATH or a path. */
  command: string;
  /** `tactful.server.pythonPath`: when non-empty, run `<python> -m tactful.cli serve`. */
  pythonPath: string;
  /** `tactful.server.extraArgs`. */
  extraArgs: string[];
}

export interface Launch {
  /** The resolved absolute executable. */
  command: string;
  args: string[];
  /** How the user configured it, for messages: e.g. `tactful.server.command = "tactful"`. */
  origin: string;
}

export type Resolution = { ok: true; launch: Launch } | { ok: false; problem: string; fix: string };

function isExecutableFile(p: string): boolean {
  try {
    const st = fs.statSync(p);
    if (!st.isFile()) return false;
    if (process.platform === 'win32') return true;
    fs.accessSync(p, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Look `name` up on `pathEnv` like a shell would; returns the first executable match. */
export function which(name: string, pathEnv: string | undefined, cwd?: string): string | undefined {
  if (name.includes('/') || (process.platform === 'win32' && name.includes('\\'))) {
    const p = path.resolve(cwd ?? process.cwd(), expandHome(name));
    return isExecutableFile(p) ? p : undefined;
  }
  const exts = process.platform === 'win32' ? ['', '.exe', '.cmd', '.bat'] : [''];
  for (const dir of (pathEnv ?? '').split(path.delimiter)) {
    if (!dir) continue;
    for (const ext of exts) {
      const candidate = path.join(dir, name + ext);
      if (isExecutableFile(candidate)) return candidate;
    }
  }
  return undefined;
}

export function expandHome(p: string): string {
  const home = process.env.HOME ?? process.env.USERPROFILE;
  if (home && (p === '~' || p.startsWith('~/'))) return path.join(home, p.slice(1));
  return p;
}

const INSTALL_HINT =
  'Install the server with "pip install tactful" (or run scripts/setup.sh in a tactful checkout ' +
  'and use its .venv/bin/tactful)';

/** Decide what to spawn from the settings, or explain why nothing can be spawned. */
export function resolveServer(s: ServerSettings, pathEnv: string | undefined, cwd?: string): Resolution {
  const extra = s.extraArgs.filter((a) => typeof a === 'string');
  const python = s.pythonPath.trim();
  if (python) {
    const exe = which(python, pathEnv, cwd);
    if (!exe) {
      return {
        ok: false,
        problem: `the Python interpreter "${python}" set in tactful.server.pythonPath does not exist or is not executable.`,
        fix: 'Set tactful.server.pythonPath to the full path of a Python that has tactful installed (e.g. /path/to/tactful/.venv/bin/python), or clear it to use tactful.server.command.',
      };
    }
    return {
      ok: true,
      launch: { command: exe, args: ['-m', 'tactful.cli', 'serve', ...extra], origin: `tactful.server.pythonPath = "${python}"` },
    };
  }
  const command = (s.command || 'tactful').trim();
  const exe = which(command, pathEnv, cwd);
  if (!exe) {
    const where = command.includes('/') ? 'does not exist or is not executable' : 'was not found on PATH';
    return {
      ok: false,
      problem: `the server command "${command}" (tactful.server.command) ${where}.`,
      fix: `${INSTALL_HINT}, and set tactful.server.command to the full path of the tactful executable, or tactful.server.pythonPath to a Python interpreter that has tactful installed.`,
    };
  }
  return { ok: true, launch: { command: exe, args: ['serve', ...extra], origin: `tactful.server.command = "${command}"` } };
}

/** Keeps the last `max` characters written to it (the server's stderr, for error messages). */
export class TailBuffer {
  private text = '';
  constructor(private readonly max = 4000) {}
  push(chunk: string): void {
    this.text = (this.text + chunk).slice(-this.max);
  }
  lines(n: number): string[] {
    return this.text.split(/\r?\n/).filter((l) => l.trim() !== '').slice(-n);
  }
}

/** Hints for the most common ways a resolved server still fails to start. */
export function diagnoseStderr(stderrLines: string[]): string | undefined {
  const text = stderrLines.join('\n');
  if (/No module named ['"]?tactful/.test(text)) {
    return 'That Python does not have tactful installed: run "<python> -m pip install tactful", or point tactful.server.pythonPath at the interpreter of the environment where tactful is installed.';
  }
  if (/unknown command 'serve'|unknown command "serve"/.test(text)) {
    return 'That executable is not the tactful language server (it has no "serve" command): check tactful.server.command.';
  }
  if (/ModuleNotFoundError|ImportError/.test(text)) {
    return 'The server is missing a dependency: reinstall tactful into its environment ("pip install --force-reinstall tactful", or scripts/setup.sh in a checkout).';
  }
  if (/Traceback/.test(text)) {
    return 'The server crashed while starting: see the tactful output channel for the traceback.';
  }
  return undefined;
}

/** One message for a start failure: what, why (server stderr), and how to fix it. */
export function startFailureMessage(launch: Launch, error: string, stderrLines: string[]): string {
  const cmd = [launch.command, ...launch.args].join(' ');
  const tail = stderrLines.length ? ` Server said: ${stderrLines.slice(-3).join(' | ')}` : '';
  const hint = diagnoseStderr(stderrLines) ?? 'Run the command in a terminal to see why, and check the tactful output channel.';
  return `tactful: the language server could not start ("${cmd}" from ${launch.origin}): ${error}.${tail} ${hint}`;
}
