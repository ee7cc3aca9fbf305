// `zeo status ADDRESS [--json]`: what the server's `ruok` answer says (ZEO.nagios's request: the status of every
// storage it serves), as a readable table (a column per storage) or the JSON as the server sent it. Exit 0 when
// it answered, 2 (nagios CRITICAL) when it did not, with the reason on stderr.

import { Command } from 'commander';
import type { ServerAddress } from '../client/connection.js';
import type { PickleValue } from '../pickle/index.js';
import { TimeStamp } from '../storage/timestamp.js';
import { socketConnectionAddress } from '../zconfig/index.js';
import { addTlsOptions, sslFromOptions } from './copy.js';

/** A storage's status as ruok sends it (ZEO's StorageServer.server_status). */
export type StorageStatus = Record<string, unknown>;

/** ruok's answer (dicts as Maps) back to the JSON the server sent: {storage name: {key: value}}. */
export function statusFromRuok(value: PickleValue): Record<string, StorageStatus> {
  const plain = (v: PickleValue): unknown => {
    if (v instanceof Map)
      return Object.fromEntries(
        [...v].map(([k, x]) => [typeof k === 'string' ? k : JSON.stringify(plain(k)), plain(x)]),
      );
    if (Array.isArray(v)) return v.map(plain);
    return v;
  };
  const out = plain(value);
  if (out === null || typeof out !== 'object' || Array.isArray(out)) {
    throw new Error(`the server's status is not a mapping of storages: ${JSON.stringify(out)}`);
  }
  return out as Record<string, StorageStatus>;
}

/** A tid's hex and its time: '03e9...  2026-12-06 18:22:10.123456 UTC'. */
function transactionCell(hex: unknown): string {
  if (typeof hex !== 'string' || !/^[0-9a-f]{16}$/i.test(hex)) return cell(hex);
  if (/^0{16}$/.test(hex)) return `${hex} (none yet)`;
  return `${hex} (${new TimeStamp(Buffer.from(hex, 'hex')).toString()} UTC)`;
}

/** ZEO's lock_time: when the commit lock was taken (seconds since the epoch), or null when it is free. */
function lockCell(v: unknown, now: number): string {
  if (v === null || v === undefined) return 'free';
  if (typeof v !== 'number') return cell(v);
  return `held for ${Math.max(0, now - v).toFixed(3)} s (since ${new Date(v * 1000).toISOString()})`;
}

function cell(v: unknown): string {
  if (v === null || v === undefined) return '-';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
}

/** The table's rows: a label, and how it reads a storage's status (keys ZEO 5 and 6 servers send). */
const ROWS: Array<[string, (s: StorageStatus, now: number) => string]> = [
  ['connections', (s) => cell(s.connections)],
  ['loads', (s) => cell(s.loads)],
  ['stores', (s) => cell(s.stores)],
  ['commits', (s) => cell(s.commits)],
  ['aborts', (s) => cell(s.aborts)],
  ['active transactions', (s) => cell(s.active_txns)],
  [
    'conflicts',
    (s) =>
      s.conflicts_resolved
        ? `${cell(s.conflicts)} (${cell(s.conflicts_resolved)} resolved)`
        : cell(s.conflicts),
  ],
  ['waiting for the lock', (s) => cell(s.waiting)],
  ['commit lock', (s, now) => lockCell(s.lock_time, now)],
  ['last transaction', (s) => transactionCell(s['last-transaction'])],
  ['started', (s) => cell(s.start)],
];

/** The status as a table: a row per figure, a column per storage. */
export function formatStatus(status: Record<string, StorageStatus>, now = Date.now() / 1000): string {
  const names = Object.keys(status);
  if (names.length === 0) return 'the server serves no storage\n';
  const table: string[][] = [['storage', ...names]];
  for (const [label, read] of ROWS) table.push([label, ...names.map((n) => read(status[n] ?? {}, now))]);
  const widths = table[0].map((_, i) => Math.max(...table.map((r) => r[i].length)));
  return table
    .map(
      (r) =>
        r
          .map((c, i) => c.padEnd(widths[i]))
          .join('  ')
          .trimEnd() + '\n',
    )
    .join('');
}

/** ADDRESS as the command takes it: HOST:PORT, PORT (127.0.0.1), [V6]:PORT, or a unix socket PATH (with a '/'). */
export function parseStatusAddress(text: string): ServerAddress {
  const a = socketConnectionAddress(text);
  if (a.family === 'unix') return { path: a.path };
  if (a.port === null || a.port === 0) throw new Error(`no port in the address ${JSON.stringify(text)}`);
  return { host: a.host, port: a.port };
}

interface StatusOptions {
  json?: boolean;
  timeout?: string;
  sslCertificate?: string;
  sslKey?: string;
  sslAuthenticate?: string;
  sslCheckHostname?: boolean;
  sslServerHostname?: string;
}

export function statusCommand(): Command {
  return addTlsOptions(
    new Command('status')
      .description(
        "ask a ZEO server (zeo serve or runzeo) how its storages are, as ZEO's nagios check does (ruok): a table, " +
          'or the JSON the server sent. Exit 0 when it answered, 2 (CRITICAL) when it did not',
      )
      .argument('<address>', 'HOST:PORT, PORT (on 127.0.0.1), [V6]:PORT or a unix socket PATH')
      .option('--json', 'print the JSON as the server sent it')
      .option('--timeout <seconds>', 'how long to wait for the answer (default 10)'),
  ).action(async (text: string, opts: StatusOptions) => {
    const fail = (why: string): void => {
      process.stderr.write(`zeo status: ${why}\n`);
      process.exitCode = 2;
    };
    let address: ServerAddress;
    try {
      address = parseStatusAddress(text);
    } catch (e) {
      fail((e as Error).message);
      return;
    }
    const seconds = Number(opts.timeout ?? '10');
    if (!Number.isFinite(seconds) || seconds <= 0) {
      fail(`--timeout: not a number of seconds: ${opts.timeout}`);
      return;
    }
    const { ruok } = await import('../client/ruok.js');
    let status: Record<string, StorageStatus>;
    try {
      const ssl = sslFromOptions(opts);
      status = statusFromRuok(await ruok(address, { timeout: seconds * 1000, ...(ssl ? { tls: ssl } : {}) }));
    } catch (e) {
      fail((e as Error).message);
      return;
    }
    process.stdout.write(opts.json ? `${JSON.stringify(status, null, 2)}\n` : formatStatus(status));
  });
}
