/**
 * The tactful VS Code extension: starts `tactful serve` with vscode-languageclient 11 (inline
 * completions as ghost text, list completions, line flags as diagnostics with their quick fix),
 * reports shown / partially accepted / dismissed inline suggestions to the server, shows the
 * model state and the session's acceptance rate in the status bar, and offers the server's
 * commands (toggle, flag file, replay report, log location, train) in the command palette.
 *
 * Logic that does not need VS Code lives in serverCommand.ts, settings.ts, status.ts and
 * inlineTracker.ts (unit-tested with node:test); this file is the glue.
 */
import { spawn, type ChildProcess } from 'child_process';
import * as os from 'os';
import * as fs from 'fs';
import * as vscode from 'vscode';
import {
  DidChangeConfigurationNotification,
  ExecuteCommandRequest,
  LanguageClient,
  RevealOutputChannelOn,
  State,
  type LanguageClientOptions,
  type Middleware,
  type NotificationHandler,
  type ProgressType,
  type ServerOptions,
} from 'vscode-languageclient/node';
import { commandError } from './commandResult';
import { InlineTracker, type TrackedItem } from './inlineTracker';
import { listMode, offerListItems, repeatsTyped } from './listPolicy';
import * as P from './protocol';
import { resolveServer, startFailureMessage, TailBuffer, type Launch } from './serverCommand';
import { nestSettings, serverSettingKeys } from './settings';
import { statusView, type ClientPhase } from './status';
import { stdioOptions } from './serverLog';

const SECTION = 'tactful';

interface ProgressValue {
  kind?: string;
  message?: string;
  percentage?: number;
}

/**
 * A LanguageClient that also tells the extension about work-done progress (the server reports
 * model loading with `$/progress`); the client's own progress UI keeps working as before.
 */
class TactfulLanguageClient extends LanguageClient {
  progressListener: ((value: ProgressValue) => void) | undefined;

  override onProgress<P>(type: ProgressType<P>, token: string | number, handler: NotificationHandler<P>): vscode.Disposable {
    return super.onProgress(type, token, (value: P) => {
      this.progressListener?.(value as ProgressValue);
      return handler(value);
    });
  }
}

class TactfulExtension implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private phase: ClientPhase = 'starting';
  private status: P.Status | undefined;
  /** Latest work-done progress while the model loads, e.g. "50%". */
  private progress: string | undefined;
  private readonly output: vscode.LogOutputChannel;
  private readonly statusItem: vscode.StatusBarItem;
  private readonly tracker = new InlineTracker();
  private readonly settingKeys: string[];
  private readonly disposables: vscode.Disposable[] = [];
  private startGeneration = 0;
  private statusRefresh: NodeJS.Timeout | undefined;

  constructor(context: vscode.ExtensionContext) {
    this.output = vscode.window.createOutputChannel('tactful', { log: true });
    this.statusItem = vscode.window.createStatusBarItem('tactful.status', vscode.StatusBarAlignment.Right, 100);
    this.statusItem.name = 'tactful';
    this.statusItem.command = 'tactful.showMenu';
    const pkg = context.extension.packageJSON as { contributes: { configuration: { properties: Record<string, unknown> } } };
    this.settingKeys = serverSettingKeys(pkg.contributes.configuration.properties);
    this.render();
    this.statusItem.show();
  }

  // --- settings ------------------------------------------------------------------------------
  /** The server's settings, nested camelCase, as sent in initializationOptions. */
  serverSettings(): Record<string, unknown> {
    const cfg = vscode.workspace.getConfiguration(SECTION);
    return nestSettings(this.settingKeys, (k) => cfg.get(k));
  }

  private serverEnv(): NodeJS.ProcessEnv {
    const extra = vscode.workspace.getConfiguration(SECTION).get<Record<string, unknown>>('server.env') ?? {};
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const [k, v] of Object.entries(extra)) if (typeof v === 'string') env[k] = v;
    return env;
  }

  // --- lifecycle -------------------------------------------------------------------------------
  async start(): Promise<void> {
    const generation = ++this.startGeneration;
    this.setPhase('starting');
    const cfg = vscode.workspace.getConfiguration(SECTION);
    const env = this.serverEnv();
    const cwd = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? os.homedir();
    const resolution = resolveServer(
      {
        command: cfg.get<string>('server.command') ?? 'tactful',
        pythonPath: cfg.get<string>('server.pythonPath') ?? '',
        extraArgs: cfg.get<string[]>('server.extraArgs') ?? [],
      },
      env.PATH,
      cwd,
    );
    if (!resolution.ok) {
      this.failStart(`tactful: cannot start the language server: ${resolution.problem} ${resolution.fix}`);
      return;
    }
    const launch = resolution.launch;
    const stderr = new TailBuffer();
    this.output.appendLine(`[tactful] starting ${launch.command} ${launch.args.join(' ')} (${launch.origin})`);

    const serverOptions: ServerOptions = () => spawnServer(launch, env, cwd, stderr);
    const clientOptions: LanguageClientOptions = {
      documentSelector: [{ scheme: 'file' }, { scheme: 'untitled' }],
      outputChannel: this.output,
      revealOutputChannelOn: RevealOutputChannelOn.Never,
      initializationOptions: this.serverSettings(),
      middleware: this.middleware(),
      connectionOptions: { maxRestartCount: 3 },
      // The server's log lines at their own levels (by default every stderr line is an error).
      stdioOptions: stdioOptions(),
    };
    const client = new TactfulLanguageClient(SECTION, 'tactful', serverOptions, clientOptions);
    this.client = client;
    this.progress = undefined;
    client.progressListener = (value) => {
      if (client !== this.client) return;
      if (value.kind === 'end') this.progress = undefined;
      else if (typeof value.percentage === 'number') this.progress = `${Math.round(value.percentage)}%`;
      this.render();
    };
    client.onDidChangeState((e) => {
      if (client !== this.client) return;
      if (e.newState === State.Running) this.setPhase('running');
      else if (e.newState === State.Stopped && this.phase !== 'startFailed') this.setPhase('stopped');
    });
    client.onNotification(P.STATUS, (s: P.Status) => {
      if (client !== this.client) return;
      this.status = s;
      this.render();
    });
    try {
      await client.start();
    } catch (err) {
      if (generation !== this.startGeneration) return;
      this.failStart(startFailureMessage(launch, errorText(err), stderr.lines(5)));
      return;
    }
    if (generation !== this.startGeneration) return;
    this.setPhase('running');
    try {
      this.status = (await this.execute<P.Status>(P.CMD_STATUS, [])) ?? this.status;
      this.render();
    } catch (err) {
      this.output.appendLine(`[tactful] ${P.CMD_STATUS} failed: ${errorText(err)}`);
    }
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.status = undefined;
    this.tracker.clear();
    if (client && client.state !== State.Stopped) {
      try {
        await client.stop(5000);
      } catch (err) {
        this.output.appendLine(`[tactful] stopping the server: ${errorText(err)}`);
      }
    }
    this.setPhase('stopped');
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  private failStart(message: string): void {
    this.setPhase('startFailed');
    this.output.appendLine(`[tactful] ${message}`);
    void vscode.window.showErrorMessage(message, 'Open Settings', 'Show Output', 'Retry').then((choice) => {
      if (choice === 'Open Settings') void vscode.commands.executeCommand('workbench.action.openSettings', 'tactful.server');
      else if (choice === 'Show Output') this.output.show(true);
      else if (choice === 'Retry') void this.restart();
    });
  }

  private setPhase(phase: ClientPhase): void {
    this.phase = phase;
    this.render();
  }

  private render(): void {
    const view = statusView(this.phase, this.status, this.progress);
    this.statusItem.text = view.text;
    this.statusItem.tooltip = view.tooltip;
    this.statusItem.backgroundColor =
      view.severity === 'error'
        ? new vscode.ThemeColor('statusBarItem.errorBackground')
        : view.severity === 'warning'
          ? new vscode.ThemeColor('statusBarItem.warningBackground')
          : undefined;
  }

  // --- LSP plumbing ----------------------------------------------------------------------------
  private middleware(): Middleware {
    return {
      // List items (the suggest widget) only where they do not compete with the ghost text
      // (tactful.listCompletions), and never one that merely repeats the typed word: with VS
      // Code's defaults the widget opens as you type, and Enter would take such an item instead
      // of inserting a newline. Nothing is asked of the server when no list is wanted.
      provideCompletionItem: async (document, position, context, token, next) => {
        const mode = listMode(vscode.workspace.getConfiguration(SECTION, document).get('listCompletions'));
        const inline = vscode.workspace.getConfiguration('editor', document).get<boolean>('inlineSuggest.enabled') ?? true;
        if (!offerListItems(mode, inline)) return new vscode.CompletionList([], false);
        const result = await next(document, position, context, token);
        if (!result) return result;
        const keep = (item: vscode.CompletionItem) => !listItemRepeatsTyped(document, position, item);
        if (Array.isArray(result)) return result.filter(keep);
        result.items = result.items.filter(keep);
        return result;
      },
      provideInlineCompletionItems: async (document, position, context, token, next) => {
        const result = await next(document, position, context, token);
        if (result && !token.isCancellationRequested) {
          const items = Array.isArray(result) ? result : result.items;
          if (items.length > 0) this.track(document, position, items[0]);
        }
        return result;
      },
      executeCommand: async (command, args, next) => {
        if (command !== P.CMD_ACCEPT) return next(command, args);
        const editor = vscode.window.activeTextEditor;
        const unreported = this.tracker.acceptedUnreported(args);
        // Written before the accept request, so the server logs the display first.
        if (unreported) await this.notify(P.DID_SHOW_COMPLETION, { item: unreported.item });
        this.tracker.clear(editor?.document.uri.toString());
        const result = await next(command, args);
        this.refreshStatusSoon();
        return result;
      },
      workspace: {
        configuration: async (params, token, next) => {
          const result = await next(params, token);
          if (!Array.isArray(result)) return result;
          const settings = this.serverSettings();
          return params.items.map((item, i) => {
            const section = item.section ?? '';
            if (section === SECTION) return settings;
            if (section.startsWith(`${SECTION}.`)) {
              let node: unknown = settings;
              for (const part of section.slice(SECTION.length + 1).split('.')) {
                node = typeof node === 'object' && node !== null ? (node as Record<string, unknown>)[part] : undefined;
              }
              return node ?? null;
            }
            return result[i];
          });
        },
      },
    };
  }

  /** Remember the first inline item VS Code got for the editor; report it shown once visible. */
  private track(document: vscode.TextDocument, position: vscode.Position, vsItem: vscode.InlineCompletionItem): void {
    const item = toLspItem(vsItem, position);
    const start = vsItem.range?.start ?? position;
    const tracked = this.tracker.provided(document.uri.toString(), item, document.offsetAt(start));
    const version = document.version;
    // VS Code renders the ghost text as soon as the provider resolves; give it a moment and
    // report the item shown if the editor is still where it was asked for.
    setTimeout(() => this.reportShown(tracked, document, version, position), 60);
  }

  private reportShown(t: TrackedItem, document: vscode.TextDocument, version: number, position: vscode.Position): void {
    const editor = vscode.window.activeTextEditor;
    if (!this.client || this.tracker.active !== t) return;
    if (!editor || editor.document !== document || document.version !== version) return;
    if (!editor.selection.active.isEqual(position)) return;
    if (!this.tracker.markShown(t)) return;
    void this.notify(P.DID_SHOW_COMPLETION, { item: t.item });
  }

  /** Ask for the status (session counters) shortly after an accept, coalescing bursts. */
  private refreshStatusSoon(): void {
    if (this.statusRefresh) return;
    this.statusRefresh = setTimeout(() => {
      this.statusRefresh = undefined;
      this.execute<P.Status>(P.CMD_STATUS, [])
        .then((s) => {
          if (s) {
            this.status = s;
            this.render();
          }
        })
        .catch((err: unknown) => this.output.appendLine(`[tactful] ${P.CMD_STATUS}: ${errorText(err)}`));
    }, 300);
  }

  /** Send a notification; resolves once it is written (errors go to the output channel). */
  private notify(method: string, params: unknown): Promise<void> {
    const client = this.client;
    if (!client || client.state !== State.Running) return Promise.resolve();
    return client.sendNotification(method, params).catch((err: unknown) => this.output.appendLine(`[tactful] ${method}: ${errorText(err)}`));
  }

  async execute<T>(command: string, args: unknown[]): Promise<T | undefined> {
    const client = this.client;
    if (!client || client.state !== State.Running) {
      throw new Error('the tactful language server is not running (see the tactful output channel, or run "tactful: Restart the Language Server")');
    }
    const result = (await client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args })) as T | undefined;
    const error = commandError(result);
    if (error !== undefined) throw new Error(error);
    return result;
  }

  configurationChanged(e: vscode.ConfigurationChangeEvent): void {
    if (!e.affectsConfiguration(SECTION)) return;
    if (e.affectsConfiguration(`${SECTION}.server`)) {
      this.output.appendLine('[tactful] server settings changed: restarting the server');
      void this.restart();
      return;
    }
    void this.notify(DidChangeConfigurationNotification.method, { settings: { [SECTION]: this.serverSettings() } });
  }

  // --- user commands ---------------------------------------------------------------------------
  async partialAccept(kind: 'Word' | 'Line'): Promise<void> {
    const editor = vscode.window.activeTextEditor;
    await vscode.commands.executeCommand(`editor.action.inlineSuggest.acceptNext${kind}`);
    if (!editor) return;
    // Let the edit and the cursor move reach the extension host before measuring.
    await new Promise((r) => setTimeout(r, 0));
    const done = this.tracker.partiallyAccepted(editor.document.uri.toString(), editor.document.offsetAt(editor.selection.active));
    if (done) {
      void this.notify(P.DID_PARTIALLY_ACCEPT_COMPLETION, { item: done.item, acceptedLength: done.acceptedLength });
      this.refreshStatusSoon();
    }
  }

  async dismissInline(): Promise<void> {
    const editor = vscode.window.activeTextEditor;
    await vscode.commands.executeCommand('editor.action.inlineSuggest.hide');
    const id = editor ? this.tracker.dismissed(editor.document.uri.toString()) : undefined;
    if (id !== undefined && this.client?.state === State.Running) {
      this.execute(P.CMD_REJECT, [id]).catch((err: unknown) => this.output.appendLine(`[tactful] ${P.CMD_REJECT}: ${errorText(err)}`));
    }
  }

  async toggle(): Promise<void> {
    const res = await this.execute<{ enabled: boolean }>(P.CMD_TOGGLE, []);
    if (res && this.status) this.status = { ...this.status, enabled: res.enabled };
    this.render();
    void vscode.window.showInformationMessage(`tactful: AI completions are now ${res?.enabled ? 'on' : 'off'}.`);
  }

  async flagCurrentFile(): Promise<void> {
    const editor = vscode.window.activeTextEditor;
    if (!editor) {
      void vscode.window.showWarningMessage('tactful: open a file first: "Flag Unusual Lines" works on the active editor.');
      return;
    }
    const res = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Window, title: 'tactful: flagging lines' },
      () => this.execute<{ flags?: unknown[] }>(P.CMD_FLAG, [editor.document.uri.toString()]),
    );
    const n = Array.isArray(res?.flags) ? res.flags.length : 0;
    const name = editor.document.uri.path.split('/').pop();
    const choice = await vscode.window.showInformationMessage(
      n === 0 ? `tactful: no unusual lines in ${name}.` : `tactful: ${n} unusual line${n === 1 ? '' : 's'} in ${name}.`,
      ...(n > 0 ? ['Show Problems'] : []),
    );
    if (choice === 'Show Problems') await vscode.commands.executeCommand('workbench.actions.view.problems');
  }

  async openReplayReport(): Promise<void> {
    const res = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: 'tactful: replaying your feedback log' },
      () => this.execute<{ html?: string }>(P.CMD_REPLAY_REPORT, []),
    );
    const html = res?.html;
    if (!html) throw new Error('the server wrote no report');
    const panel = vscode.window.createWebviewPanel('tactful.replayReport', 'tactful replay report', vscode.ViewColumn.Active, {
      enableScripts: false,
    });
    panel.webview.html = fs.readFileSync(html, 'utf8');
    const choice = await vscode.window.showInformationMessage(`tactful: replay report written to ${html}`, 'Copy Path', 'Open in Browser');
    if (choice === 'Copy Path') await vscode.env.clipboard.writeText(html);
    else if (choice === 'Open in Browser') await vscode.env.openExternal(vscode.Uri.file(html));
  }

  async showLogLocation(): Promise<void> {
    const res = await this.execute<{ path: string | null; enabled: boolean }>(P.CMD_LOG_LOCATION, []);
    if (!res?.path) {
      void vscode.window.showInformationMessage('tactful: the feedback log is off (tactful.feedback.enable), nothing is recorded.');
      return;
    }
    const state = res.enabled ? '' : ' (logging is off: nothing new is recorded)';
    const choice = await vscode.window.showInformationMessage(`tactful: feedback log: ${res.path}${state}`, 'Copy Path', 'Reveal');
    if (choice === 'Copy Path') await vscode.env.clipboard.writeText(res.path);
    else if (choice === 'Reveal') await vscode.commands.executeCommand('revealFileInOS', vscode.Uri.file(res.path));
  }

  async trainFromLog(): Promise<void> {
    // The server reports the outcome itself (window/showMessage); keep the details in the log.
    const res = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: 'tactful: training the show/hide cascade from your log' },
      () => this.execute<Record<string, unknown>>(P.CMD_TRAIN, []),
    );
    this.output.appendLine(`[tactful] ${P.CMD_TRAIN}: ${JSON.stringify(res)}`);
  }

  async showMenu(): Promise<void> {
    const enabled = this.status?.enabled ?? true;
    const items: (vscode.QuickPickItem & { command: string })[] = [
      { label: enabled ? '$(circle-slash) Turn AI completions off' : '$(sparkle) Turn AI completions on', command: 'tactful.toggleCompletions' },
      { label: '$(warning) Flag unusual lines in the current file', command: 'tactful.flagCurrentFile' },
      { label: '$(graph) Open the replay report of my log', command: 'tactful.openReplayReport' },
      { label: '$(database) Show the feedback log location', command: 'tactful.showLogLocation' },
      { label: '$(mortar-board) Train the show/hide cascade from my log', command: 'tactful.trainFromLog' },
      { label: '$(debug-restart) Restart the language server', command: 'tactful.restartServer' },
      { label: '$(output) Show output', command: 'tactful.showOutput' },
      { label: '$(gear) Settings', command: 'workbench.action.openSettings' },
    ];
    const pick = await vscode.window.showQuickPick(items, { title: statusView(this.phase, this.status).tooltip.split('\n')[0] });
    if (!pick) return;
    if (pick.command === 'workbench.action.openSettings') await vscode.commands.executeCommand(pick.command, '@ext:tactful.tactful');
    else await vscode.commands.executeCommand(pick.command);
  }

  documentClosed(uri: string): void {
    this.tracker.clear(uri);
  }

  showOutput(): void {
    this.output.show(true);
  }

  dispose(): void {
    for (const d of this.disposables) d.dispose();
    this.statusItem.dispose();
    this.output.dispose();
  }
}

/** Spawn the server, resolving once the process runs (rejecting with the OS error if it can't). */
function spawnServer(launch: Launch, env: NodeJS.ProcessEnv, cwd: string, stderr: TailBuffer): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(launch.command, launch.args, { env, cwd, stdio: 'pipe' });
    child.stderr?.on('data', (d: Buffer) => stderr.push(d.toString('utf8')));
    child.once('error', (err) => reject(err));
    child.once('spawn', () => resolve(child));
  });
}

function errorText(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** Whether a list item only repeats the text between its range's start and the cursor. */
function listItemRepeatsTyped(document: vscode.TextDocument, position: vscode.Position, item: vscode.CompletionItem): boolean {
  const range = item.range === undefined ? undefined : item.range instanceof vscode.Range ? item.range : item.range.replacing;
  const start = range && range.start.line === position.line && range.start.isBeforeOrEqual(position) ? range.start : position;
  const label = typeof item.label === 'string' ? item.label : item.label.label;
  const text = item.insertText === undefined ? label : typeof item.insertText === 'string' ? item.insertText : item.insertText.value;
  return repeatsTyped(text, document.getText(new vscode.Range(start, position)));
}

/** The LSP item as the server sent it, rebuilt from the VS Code item the client converted. */
function toLspItem(item: vscode.InlineCompletionItem, position: vscode.Position): P.LspInlineItem {
  const range = item.range ?? new vscode.Range(position, position);
  const out: P.LspInlineItem = {
    insertText: typeof item.insertText === 'string' ? item.insertText : item.insertText.value,
    range: {
      start: { line: range.start.line, character: range.start.character },
      end: { line: range.end.line, character: range.end.character },
    },
  };
  if (item.filterText !== undefined) out.filterText = item.filterText;
  if (item.command) {
    out.command = { title: item.command.title, command: item.command.command, arguments: item.command.arguments ?? [] };
  }
  return out;
}

let extension: TactfulExtension | undefined;

/** What each command does, for error messages ("tactful: could not flag unusual lines ..."). */
const COMMAND_TITLES: Record<string, string> = {
  'tactful.toggleCompletions': 'toggle AI completions',
  'tactful.flagCurrentFile': 'flag unusual lines in the current file',
  'tactful.openReplayReport': 'open the replay report',
  'tactful.showLogLocation': 'show the feedback log location',
  'tactful.trainFromLog': 'train the show/hide cascade from your log',
  'tactful.showMenu': 'show the menu',
  'tactful.restartServer': 'restart the language server',
  'tactful.showOutput': 'show the output',
  'tactful.acceptNextWord': 'accept the next word',
  'tactful.acceptNextLine': 'accept the next line',
  'tactful.dismissInline': 'dismiss the suggestion',
};

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const ext = new TactfulExtension(context);
  extension = ext;
  const run = (name: string, fn: () => unknown) =>
    vscode.commands.registerCommand(name, async () => {
      try {
        await fn();
      } catch (err) {
        const title = COMMAND_TITLES[name] ?? name;
        void vscode.window.showErrorMessage(`tactful: could not ${title}: ${errorText(err)}`);
      }
    });
  context.subscriptions.push(
    ext,
    run('tactful.toggleCompletions', () => ext.toggle()),
    run('tactful.flagCurrentFile', () => ext.flagCurrentFile()),
    run('tactful.openReplayReport', () => ext.openReplayReport()),
    run('tactful.showLogLocation', () => ext.showLogLocation()),
    run('tactful.trainFromLog', () => ext.trainFromLog()),
    run('tactful.showMenu', () => ext.showMenu()),
    run('tactful.restartServer', () => ext.restart()),
    run('tactful.showOutput', () => ext.showOutput()),
    run('tactful.acceptNextWord', () => ext.partialAccept('Word')),
    run('tactful.acceptNextLine', () => ext.partialAccept('Line')),
    run('tactful.dismissInline', () => ext.dismissInline()),
    vscode.workspace.onDidChangeConfiguration((e) => ext.configurationChanged(e)),
    vscode.workspace.onDidCloseTextDocument((doc) => ext.documentClosed(doc.uri.toString())),
  );
  await ext.start();
}

export async function deactivate(): Promise<void> {
  await extension?.stop();
  extension = undefined;
}
