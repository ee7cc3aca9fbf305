// `zeo copy SOURCE DEST [--incremental]`: every transaction of SOURCE restored into DEST with its tid, status,
// metadata and back pointers, and the blob files when both sides keep blobs (zodbconvert; ZODB's
// copyTransactionsFrom and copyTransactionsFromTo). Each side is a Data.fs path (or file: URL), a zeo:// URL or
// a postgresql:// URL (a database in RelStorage's schema). Without
// --incremental DEST must have no transactions; with it the copy continues after DEST's last transaction,
// and is refused when DEST has transactions SOURCE lacks. Exit 0 when done, 1 when refused, failed or
// interrupted (Ctrl-C stops after the transaction in hand; what was committed before stays, and
// --incremental continues from there).

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import type { OpenSpecOptions } from '../client/open.js';
import { CopyError, type CopyProgress, type CopyResult } from '../storage/copy.js';
import { idHex } from '../storage/ids.js';
import type { Storage } from '../storage/interfaces.js';
import type { TlsSection } from '../transport/tls.js';
import { ProgressBar } from './progress.js';

export interface CopyCommandOptions {
  incremental?: boolean;
  sourceBlobDir?: string;
  destBlobDir?: string;
  blobs?: boolean;
  sslCertificate?: string;
  sslKey?: string;
  sslAuthenticate?: string;
  sslCheckHostname?: boolean;
  sslServerHostname?: string;
  waitTimeout?: string;
  quiet?: boolean;
}

/** The <ssl> section the TLS options make, or null when none is given. */
export function sslFromOptions(o: {
  sslCertificate?: string;
  sslKey?: string;
  sslAuthenticate?: string;
  sslCheckHostname?: boolean;
  sslServerHostname?: string;
}): TlsSection | null {
  const given =
    o.sslCertificate !== undefined ||
    o.sslKey !== undefined ||
    o.sslAuthenticate !== undefined ||
    o.sslServerHostname !== undefined ||
    o.sslCheckHostname === false;
  if (!given) return null;
  return {
    certificate: o.sslCertificate ?? null,
    key: o.sslKey ?? null,
    passwordFunction: null,
    authenticate: o.sslAuthenticate ?? null,
    checkHostname: o.sslCheckHostname ?? true,
    serverHostname: o.sslServerHostname ?? null,
  };
}

/** Adds the TLS options a command that connects to a server takes. */
export function addTlsOptions(cmd: Command): Command {
  return cmd
    .option('--ssl-certificate <file>', "the client's certificate (PEM), for a server that asks for one")
    .option('--ssl-key <file>', "the client certificate's key (PEM; default: in the certificate file)")
    .option(
      '--ssl-authenticate <file>',
      "the CA file (or directory) that the server's certificate is checked against",
    )
    .option('--no-ssl-check-hostname', "don't check the server's name against its certificate")
    .option('--ssl-server-hostname <name>', 'the name to check the certificate against (and send as SNI)');
}

function parseWaitTimeout(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new CopyError(`--wait-timeout: not a number of seconds: ${v}`);
  return n * 1000;
}

/** Runs the copy; returns what was copied. Errors are thrown (the command prints them). */
export async function runCopy(
  source: string,
  dest: string,
  opts: CopyCommandOptions,
  bar: ProgressBar | null,
  control: { signal?: AbortSignal; onTransaction?: (p: CopyProgress) => void } = {},
): Promise<CopyResult & { after: Uint8Array | null }> {
  // the client's modules load only when a copy runs
  const [{ isZeoUrl, openStorage }, { copyStorage }] = await Promise.all([
    import('../client/open.js'),
    import('../storage/copy.js'),
  ]);
  const ssl = sslFromOptions(opts);
  const waitTimeout = parseWaitTimeout(opts.waitTimeout);
  const common: OpenSpecOptions = { ssl, waitTimeout };
  if (ssl && !isZeoUrl(source) && !isZeoUrl(dest)) throw new CopyError('TLS options are for a zeo:// side');
  let src: Storage | null = null;
  let dst: Storage | null = null;
  // a server's blobs come through a blob cache: a temporary one unless one is named
  const cache =
    isZeoUrl(source) && !opts.sourceBlobDir ? await mkdtemp(join(tmpdir(), 'zeo-copy-blobs-')) : null;
  try {
    src = await openStorage(source, {
      ...common,
      readOnly: true,
      blobDir: opts.sourceBlobDir ?? cache,
    });
    dst = await openStorage(dest, { ...common, readOnly: false, blobDir: opts.destBlobDir ?? null });
    const total = src.getSize();
    bar?.update(0, total);
    return await copyStorage(src, dst, {
      incremental: opts.incremental ?? false,
      blobs: opts.blobs === false ? false : undefined,
      signal: control.signal,
      onTransaction: (p) => {
        bar?.update(Math.min(p.bytes, total > 0 ? total - 1 : p.bytes), total);
        control.onTransaction?.(p);
      },
    });
  } finally {
    await dst?.close();
    await src?.close();
    if (cache) await rm(cache, { recursive: true, force: true });
  }
}

export function copyCommand(): Command {
  const cmd = new Command('copy')
    .description(
      'copy every transaction of SOURCE into DEST with its tid, status, metadata and back pointers, and the ' +
        'blob files when both keep blobs (as zodbconvert does). Each is a Data.fs path, a zeo:// URL ' +
        '(zeo://host:port?storage=1, zeo:///path/to/socket) or a postgresql:// URL (a database in ' +
        "RelStorage's schema: postgresql://user@host/dbname?sslmode=require&create_schema=false). " +
        'Exit 0 when done, 1 when refused or failed',
    )
    .argument('<source>', 'the storage to read: a Data.fs path, a zeo:// URL or a postgresql:// URL')
    .argument(
      '<dest>',
      'the storage to write: a Data.fs path (created if missing), a zeo:// URL or a postgresql:// URL',
    )
    .option(
      '--incremental',
      "continue after DEST's last transaction (refused when DEST has transactions SOURCE lacks)",
    )
    .option(
      '--source-blob-dir <dir>',
      "a Data.fs SOURCE's blob directory (a zeo:// SOURCE's blob cache; default: a temporary one)",
    )
    .option('--dest-blob-dir <dir>', "a Data.fs DEST's blob directory")
    .option('--no-blobs', 'copy blob records without their files')
    .option('--wait-timeout <seconds>', 'how long to wait for a zeo:// server (default 30)');
  return addTlsOptions(cmd)
    .option('-q, --quiet', 'no progress bar and no summary')
    .action(async (source: string, dest: string, opts: CopyCommandOptions) => {
      const quiet = opts.quiet ?? false;
      const bar = new ProgressBar({ label: 'copy', total: 0, enabled: !quiet });
      // Ctrl-C stops after the transaction in hand and closes both storages (a second one: at once)
      const interrupt = new AbortController();
      const onSignal = (): void => {
        if (interrupt.signal.aborted) process.exit(130);
        interrupt.abort(new CopyError('interrupted'));
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      let done: CopyProgress | null = null;
      let r;
      try {
        r = await runCopy(source, dest, opts, bar, {
          signal: interrupt.signal,
          onTransaction: (p) => (done = p),
        });
      } catch (e) {
        bar.finish();
        console.error(`zeo copy: ${(e as Error).message}`);
        const copied = done as CopyProgress | null;
        if (copied) {
          console.error(
            `zeo copy: ${copied.transactions} transactions were copied before that (the last ` +
              `${idHex(copied.tid)}): --incremental continues from there`,
          );
        }
        process.exitCode = 1;
        return;
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
      bar.finish();
      if (!quiet) {
        const from = r.after ? ` after tid ${idHex(r.after)}` : '';
        const span = r.first && r.last ? ` (tids ${idHex(r.first)}..${idHex(r.last)})` : '';
        console.log(
          `zeo copy: copied ${r.transactions} transactions, ${r.records} data records, ${r.blobs} blob files` +
            `${from}${span}`,
        );
      }
    });
}
