// `zeo serve`: runzeo's replacement. Reads a zeo.conf (-C) or runzeo's command-line options; with none,
// serves ./var/Data.fs on 127.0.0.1:8100.

import { mkdir, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import type { ServeOptions, ServerConfig } from '../server/config.js';
import type { Logger } from '../server/log.js';
import type { HttpListener } from '../server/http/listener.js';
import type { StorageServer } from '../server/server.js';

/** How long a stop waits for the warm-up to end (it ends within a round: milliseconds) */
const WARM_UP_STOP_MS = 2000;

// each option is a ServeOptions field; serveOptionsToConfig reads them all
const repeatable = (v: string, prev: string[] | undefined): string[] => [...(prev ?? []), v];

export function serveCommand(): Command {
  return new Command('serve')
    .description('serve storages to ZEO clients (a drop-in replacement for runzeo)')
    .option('-C, --configure <file>', 'a zeo.conf')
    .option('-a, --address <address>', 'PORT, HOST:PORT or a unix socket PATH')
    .addOption(
      new Option('-f, --filename <file>', 'serve this FileStorage (repeatable; names 1, 2, ...)').argParser(
        repeatable,
      ),
    )
    .option('-t, --timeout <seconds>', 'transaction timeout')
    .option('--pid-file <file>', 'write the server pid here')
    .addOption(
      new Option('-X, --override <section/key=value>', 'override a configuration value (with -C)').argParser(
        repeatable,
      ),
    )
    .option('-r, --read-only', 'refuse writes from every client (as read-only true in <zeo>)')
    .option(
      '--log-format <format>',
      "log lines as runzeo writes them ('text', the default) or as JSON ('json')",
    )
    .option('--max-message-size <bytes>', 'the largest message a client may send (default 256MB)')
    .option('--max-blob-upload <bytes>', 'the largest blob a client may upload (default 4GB)')
    .option(
      '--http <address>',
      'serve metrics, the dashboard and the object browser over HTTP at PORT (127.0.0.1), HOST:PORT or a unix socket PATH',
    )
    .option('--http-token-file <file>', "the HTTP listener's bearer token: the first line of this file")
    .action(async (opts: ServeOptions) => {
      // the server's modules load only when a server is started (main.ts's other commands and --help skip them)
      const { ConfigError, serveOptionsToConfig } = await import('../server/config.js');
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
      await serve(config);
    });
}

export async function serve(config: ServerConfig): Promise<void> {
  // loaded together, while nothing else waits
  const [
    { createLogger },
    { openStorages },
    { canConnect, describeAddress, StorageServer },
    { serverTlsOptions },
    { warmUp, warmUpBudget },
    httpApp,
  ] = await Promise.all([
    import('../server/log.js'),
    import('../server/open-storages.js'),
    import('../server/server.js'),
    import('../transport/tls.js'),
    import('../server/warmup.js'),
    // (node:http and the routes load only for a server that has the listener)
    config.http ? import('../server/http/app.js') : null,
  ]);
  // as runzeo: refuse an address something already listens on before touching any storage
  if (await canConnect(config.address)) {
    process.stderr.write(`Error: address ${describeAddress(config.address)} already in use\n`);
    process.exit(2);
  }
  if (config.http && (await canConnect(config.http.address))) {
    process.stderr.write(`Error: HTTP address ${describeAddress(config.http.address)} already in use\n`);
    process.exit(2);
  }
  // --log-format: runzeo's text or JSON lines
  const logging = createLogger(config.eventlog, { format: config.logFormat });
  // runzeo's own messages carry its pid
  const log = withPrefix(logging.root.child('ZEO.runzeo'), `(${process.pid}) `);
  let server: StorageServer | null = null;
  let httpListener: HttpListener | null = null;
  // the reference writes no pid file for a read-only server
  const pidFile = config.readOnly ? null : config.pidFilename;
  // Signals are handled from the start, as runzeo's are: one that comes while the storages open is acted on
  // as soon as the server exists.
  let running: StorageServer | null = null;
  let pending: { code: number; why: string } | null = null;
  let stopping = false;
  // the warm-up beside the server, stopped (its private server closed, its files gone) before the server closes
  const warmUpStop = new AbortController();
  let warming: Promise<unknown> = Promise.resolve();
  const stop = (code: number, why: string): void => {
    if (!running) {
      pending ??= { code, why };
      return;
    }
    if (stopping) return;
    stopping = true;
    log.info(why);
    const server = running;
    warmUpStop.abort();
    // (it stops within a round; should it hang, the server closes all the same)
    const warmUpOver = Promise.race([
      warming,
      new Promise((resolve) => setTimeout(resolve, WARM_UP_STOP_MS).unref()),
    ]);
    void warmUpOver
      // the HTTP side first: nothing reads a storage that is closing
      .then(() => httpListener?.close())
      .then(() => server.close())
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
    const tlsOptions = config.ssl ? serverTlsOptions(config.ssl) : null;
    const warmUpMs = warmUpBudget(process.env);
    // a bad http-token-file stops the start before any storage opens
    const http = config.http ?? null;
    const credentials =
      http && httpApp
        ? await httpApp.httpCredentials(http, {
            clientCertificates: !!config.ssl && config.ssl.authenticate !== 'DYNAMIC',
            source: config.sources?.httpTokenFile,
          })
        : null;
    const storages = await openStorages(config.storages, log);
    server = await StorageServer.create({
      storages,
      log: logging.root,
      readOnly: config.readOnly,
      msgpack: config.msgpack,
      invalidationQueueSize: config.invalidationQueueSize,
      invalidationAge: config.invalidationAge,
      transactionTimeout: config.transactionTimeout,
      limits: config.maxMessageSize ? { maxMessageSize: config.maxMessageSize } : undefined,
      maxBlobUpload: config.maxBlobUpload,
    });
    if (config.address.kind === 'unix') await mkdir(join(config.address.path, '..'), { recursive: true });
    await server.listen(config.address, tlsOptions);
    if (http && httpApp && credentials) {
      if (http.address.kind === 'unix') await mkdir(join(http.address.path, '..'), { recursive: true });
      httpListener = await httpApp.startHttpListener(
        { server, config, log: logging.root },
        http,
        credentials,
        tlsOptions,
      );
    }
    // then the hot paths compiled while no client is busy (off with ZEO_TS_WARMUP_MS=0)
    // (a warm-up that fails, for want of a temporary directory say, only leaves the code cold)
    const served = server;
    warming = warmUp(warmUpMs, {
      beside: { activity: () => served.activity(), servedLoads: () => served.servedLoads() },
      signal: warmUpStop.signal,
    }).catch((e) => log.debug('warm-up failed', e));
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'EADDRINUSE') log.critical(`address ${describeAddress(config.address)} already in use`);
    else log.critical(`could not start: ${err.message}`, e);
    // the startup error, logged above, is the one to report
    await httpListener?.close();
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
