// `zeo serve`: runzeo's replacement. Reads a zeo.conf (-C) or runzeo's command-line options; with none,
// serves ./var/Data.fs on 127.0.0.1:8100.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type tls from 'node:tls';
import { Command, Option } from 'commander';
import { ConfigError, serveOptionsToConfig, type ServerConfig, type SslConfig } from '../server/config.js';
import { createLogger, type Logger } from '../server/log.js';
import { openStorages } from '../server/open-storages.js';
import { canConnect, describeAddress, StorageServer } from '../server/server.js';

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
        config = serveOptionsToConfig(opts, process.env);
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
  // as runzeo: refuse an address something already listens on before touching any storage
  if (await canConnect(config.address)) {
    process.stderr.write(`Error: address ${describeAddress(config.address)} already in use\n`);
    process.exit(2);
  }
  const logging = createLogger(config.eventlog);
  // runzeo's own messages carry its pid
  const log = withPrefix(logging.root.child('ZEO.runzeo'), `(${process.pid}) `);
  let server: StorageServer | null = null;
  // the reference writes no pid file for a read-only server
  const pidFile = config.readOnly ? null : config.pidFilename;
  // Signals are handled from the start, as runzeo's are: one that comes while the storages open is acted on
  // as soon as the server exists.
  let running: StorageServer | null = null;
  let pending: { code: number; why: string } | null = null;
  let stopping = false;
  const stop = (code: number, why: string): void => {
    if (!running) {
      pending ??= { code, why };
      return;
    }
    if (stopping) return;
    stopping = true;
    log.info(why);
    void running
      .close()
      .then(async () => {
        if (pidFile) {
          // as runzeo: a PID file already gone is no error, one that stays is logged
          await unlink(pidFile).then(
            () => log.info(`removed PID file '${pidFile}'`),
            (e: NodeJS.ErrnoException) => {
              if (e.code !== 'ENOENT') log.error(`PID file '${pidFile}' could not be removed`);
            },
          );
        }
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
  const ready = (s: StorageServer): void => {
    running = s;
    if (pending) stop(pending.code, pending.why);
  };
  process.on('SIGTERM', () => stop(0, 'terminated by SIGTERM'));
  process.on('SIGINT', () => stop(0, 'terminated by SIGINT'));
  // a supervisor restarts the server on exit status 1
  process.on('SIGHUP', () => stop(1, 'restarted by SIGHUP'));
  process.on('SIGUSR2', () => {
    logging.reopen();
    log.info('Log files reopened successfully');
  });
  process.on('SIGXFSZ', () => {});
  try {
    if (pidFile) {
      await writeFile(pidFile, `${process.pid}\n`);
      log.info(`created PID file '${pidFile}'`);
    }
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
    if (err.code === 'EADDRINUSE') log.critical(`address ${describeAddress(config.address)} already in use`);
    else log.critical(`could not start: ${err.message}`, e);
    // the startup error, logged above, is the one to report
    await server?.close().catch(() => {});
    if (pidFile) await unlink(pidFile).catch(() => {});
    await logging.close();
    process.exit(1);
  }
  ready(server);
}

function withPrefix(log: Logger, prefix: string): Logger {
  return {
    ...log,
    trace: (m, e) => log.trace(prefix + m, e),
    debug: (m, e) => log.debug(prefix + m, e),
    blather: (m, e) => log.blather(prefix + m, e),
    info: (m, e) => log.info(prefix + m, e),
    warn: (m, e) => log.warn(prefix + m, e),
    error: (m, e) => log.error(prefix + m, e),
    critical: (m, e) => log.critical(prefix + m, e),
  };
}

/**
 * The reference's server TLS context: its certificate, client certificates required and checked against
 * `authenticate`, a CA file or a directory as OpenSSL's capath reads it (only `<subject hash>.N`
 * certificates and `<hash>.rN` CRLs), with the CRLs found there checked for the client's certificate.
 */
function loadTls(ssl: SslConfig): tls.TlsOptions {
  if (ssl.passwordFunction) {
    throw new Error(
      `<ssl> password-function ${ssl.passwordFunction} names a Python callable, which zeo-ts cannot call: ` +
        'give the server an unencrypted key file (readable by the server only)',
    );
  }
  const cert = readFileSync(ssl.certificate);
  const key = readFileSync(ssl.key ?? ssl.certificate);
  const options: tls.TlsOptions = {
    cert,
    key,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2',
  };
  const ca: string[] = [];
  const crl: string[] = [];
  if (ssl.authenticate !== 'DYNAMIC') {
    const files = statSync(ssl.authenticate).isDirectory()
      ? readdirSync(ssl.authenticate)
          .filter((f) => /^[0-9a-f]{8}\.r?\d+$/.test(f))
          .map((f) => join(ssl.authenticate, f))
      : [ssl.authenticate];
    for (const f of files) {
      const text = readFileSync(f, 'latin1');
      ca.push(...pemBlocks(text, 'CERTIFICATE'));
      crl.push(...pemBlocks(text, 'X509 CRL'));
    }
  }
  options.ca = ca;
  if (crl.length > 0) options.crl = crl;
  return options;
}

function pemBlocks(text: string, label: string): string[] {
  const re = new RegExp(`-----BEGIN ${label}-----[\\s\\S]*?-----END ${label}-----`, 'g');
  return text.match(re) ?? [];
}
