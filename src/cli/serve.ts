// `zeo serve`: runzeo's replacement. Reads a zeo.conf (-C) or runzeo's command-line options; with none,
// serves ./var/Data.fs on 127.0.0.1:8100.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type tls from 'node:tls';
import { Command, Option } from 'commander';
import { ConfigError, serveOptionsToConfig, type ServerConfig, type SslConfig } from '../server/config.js';
import { createLogger } from '../server/log.js';
import { openStorages } from '../server/open-storages.js';
import { StorageServer } from '../server/server.js';

interface ServeOptions {
  configure?: string;
  address?: string;
  filename?: string[];
  timeout?: string;
  pidFile?: string;
  override?: string[];
  maxMessageSize?: string;
}

export function serveCommand(): Command {
  return new Command('serve')
    .description('serve storages to ZEO clients (a drop-in replacement for runzeo)')
    .option('-C, --configure <file>', 'a zeo.conf')
    .option('-a, --address <address>', 'PORT, HOST:PORT or a unix socket PATH')
    .addOption(
      new Option('-f, --filename <file>', 'serve this FileStorage (repeatable; names 1, 2, ...)').argParser(
        (v: string, prev: string[] | undefined) => [...(prev ?? []), v],
      ),
    )
    .option('-t, --timeout <seconds>', 'transaction timeout')
    .option('--pid-file <file>', 'write the server pid here')
    .addOption(
      new Option('-X, --override <section/key=value>', 'override a configuration value (with -C)').argParser(
        (v: string, prev: string[] | undefined) => [...(prev ?? []), v],
      ),
    )
    .option('--max-message-size <bytes>', 'the largest message a client may send (default 256 MiB)')
    .action(async (opts: ServeOptions) => {
      let config: ServerConfig;
      try {
        config = await serveOptionsToConfig(opts, process.env);
      } catch (e) {
        if (e instanceof ConfigError) {
          process.stderr.write(`Error: ${e.message}\n`);
          process.exit(2);
        }
        throw e;
      }
      await serve(config, opts);
    });
}

export async function serve(config: ServerConfig, opts: ServeOptions = {}): Promise<void> {
  const logging = createLogger(config.eventlog);
  const log = logging.root.child('ZEO.runzeo');
  let server: StorageServer | null = null;
  try {
    const tlsOptions = config.ssl ? loadTls(config.ssl) : null;
    const storages = await openStorages(config.storages, log);
    server = await StorageServer.create({
      storages,
      log: logging.root,
      readOnly: config.readOnly,
      msgpack: config.msgpack,
      invalidationQueueSize: config.invalidationQueueSize,
      invalidationAge: config.invalidationAge,
      transactionTimeout: config.transactionTimeout,
      limits: opts.maxMessageSize ? { maxMessageSize: Number(opts.maxMessageSize) } : undefined,
    });
    if (config.address.kind === 'unix') await mkdir(join(config.address.path, '..'), { recursive: true });
    await server.listen(config.address, tlsOptions);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'EADDRINUSE') log.critical(`address ${describe(config)} already in use`);
    else log.critical(`could not start: ${err.message}`, e);
    await server?.close().catch(() => {});
    await logging.close();
    process.exit(1);
  }
  // the reference writes no pid file for a read-only server
  const pidFile = config.readOnly ? null : config.pidFilename;
  if (pidFile) await writeFile(pidFile, `${process.pid}\n`);
  const running = server;
  let stopping = false;
  const stop = (code: number, why: string): void => {
    if (stopping) return;
    stopping = true;
    log.info(`terminated by ${why}`);
    void running
      .close()
      .then(async () => {
        if (pidFile) await unlink(pidFile).catch(() => {});
        log.info('closed');
        await logging.close();
        process.exit(code);
      })
      .catch(async (e) => {
        log.critical('shutdown failed', e);
        await logging.close();
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => stop(0, 'SIGTERM'));
  process.on('SIGINT', () => stop(0, 'SIGINT'));
  process.on('SIGHUP', () => stop(1, 'SIGHUP'));
  process.on('SIGUSR2', () => {
    log.info('reopening log files');
    logging.reopen();
  });
  process.on('SIGXFSZ', () => {});
}

function describe(config: ServerConfig): string {
  const a = config.address;
  return a.kind === 'unix' ? a.path : `${a.host}:${a.port}`;
}

/** The reference's server TLS context: its certificate, and client certificates required and checked. */
function loadTls(ssl: SslConfig): tls.TlsOptions {
  const cert = readFileSync(ssl.certificate);
  const key = readFileSync(ssl.key ?? ssl.certificate);
  const options: tls.TlsOptions = {
    cert,
    key,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2',
  };
  if (ssl.authenticate !== 'DYNAMIC') {
    const st = statSync(ssl.authenticate);
    options.ca = st.isDirectory()
      ? readdirSync(ssl.authenticate)
          .filter((f) => !f.startsWith('.'))
          .map((f) => join(ssl.authenticate, f))
          .filter((f) => statSync(f).isFile())
          .map((f) => readFileSync(f))
      : [readFileSync(ssl.authenticate)];
  } else {
    options.ca = [];
  }
  return options;
}
