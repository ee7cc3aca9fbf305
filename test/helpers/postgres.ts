// A private PostgreSQL cluster for the tests (issue 12): Debian's postgresql binaries, `initdb` in a temporary
// directory, a unix socket there and no TCP listener, stopped and removed by stop(). As root (CI and these
// machines), the cluster runs as the `postgres` user, since initdb refuses root. Nothing else on the machine is
// touched. Without the binaries it throws, saying how to install them (or ZEO_TS_SKIP_POSTGRES=1: `skipPostgres`).
import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** false, or why PostgreSQL tests are skipped (only ever by the documented ZEO_TS_SKIP_POSTGRES=1) */
export const skipPostgres: false | string =
  process.env.ZEO_TS_SKIP_POSTGRES === '1' ? 'ZEO_TS_SKIP_POSTGRES=1: PostgreSQL tests are skipped' : false;

/** The directory of initdb and pg_ctl: $ZEO_TS_PG_BINDIR, else Debian's newest /usr/lib/postgresql/N/bin. */
export function postgresBinDir(): string {
  const env = process.env.ZEO_TS_PG_BINDIR;
  if (env) return env;
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => /^\d+$/.test(v) && existsSync(join(root, v, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions.length === 0)
    throw new Error(
      "PostgreSQL's server binaries are not installed (no /usr/lib/postgresql/N/bin/initdb): " +
        'apt-get install postgresql (or set ZEO_TS_PG_BINDIR, or ZEO_TS_SKIP_POSTGRES=1 to skip these tests)',
    );
  return join(root, versions[0], 'bin');
}

/** uid and gid of the `postgres` user, from /etc/passwd (null when we are not root: run as ourselves) */
function clusterUser(): { uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null;
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  if (!line)
    throw new Error(
      'running as root, and there is no postgres user to run the cluster as (initdb refuses root)',
    );
  const f = line.split(':');
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

export interface PostgresCluster {
  /** the directory of the socket (host for libpq and node-postgres) */
  readonly socketDir: string;
  readonly port: number;
  /** the superuser the tests connect as (trust authentication over the socket) */
  readonly user: string;
  /** node-postgres connection options for `database` */
  connection(database?: string): { host: string; port: number; user: string; database: string };
  /** Shuts the server down (fast: sessions are ended), keeping the cluster, as a database restart begins. */
  down(): Promise<void>;
  /** Starts the server again after down(), on the same socket. */
  up(): Promise<void>;
  /** Stops the cluster at once and removes its directory. */
  stop(): Promise<void>;
}

/**
 * Starts a private cluster. `fsync` (default false: tests do not need the disk to be safe, only fast) is the
 * server's fsync setting.
 */
export async function startPostgres(options: { fsync?: boolean } = {}): Promise<PostgresCluster> {
  const bin = postgresBinDir();
  const owner = clusterUser();
  const dir = mkdtempSync(join(tmpdir(), 'zeo-ts-pg-'));
  if (owner) chownSync(dir, owner.uid, owner.gid);
  const data = join(dir, 'data');
  const user = 'zeo';
  const port = 5432; // names the socket file only: there is no TCP listener
  const as = owner ? { uid: owner.uid, gid: owner.gid } : {};
  const env = { ...process.env, LC_ALL: 'C', HOME: dir };
  const serverOptions = [
    `-k ${dir}`,
    "-c listen_addresses=''",
    `-p ${port}`,
    `-c fsync=${options.fsync ? 'on' : 'off'}`,
  ].join(' ');
  try {
    await run(
      join(bin, 'initdb'),
      ['-D', data, '-U', user, '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync'],
      {
        ...as,
        env,
      },
    );
    await run(
      join(bin, 'pg_ctl'),
      ['-D', data, '-o', serverOptions, '-l', join(dir, 'server.log'), '-w', 'start'],
      {
        ...as,
        env,
      },
    );
  } catch (e) {
    const log = existsSync(join(dir, 'server.log')) ? readFileSync(join(dir, 'server.log'), 'utf8') : '';
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`the private PostgreSQL cluster did not start: ${(e as Error).message}\n${log}`, {
      cause: e,
    });
  }
  let stopped = false;
  const pgCtl = (args: string[]): Promise<unknown> =>
    run(join(bin, 'pg_ctl'), ['-D', data, ...args], { ...as, env });
  return {
    socketDir: dir,
    port,
    user,
    connection: (database = 'postgres') => ({ host: dir, port, user, database }),
    async down() {
      await pgCtl(['-m', 'fast', '-w', 'stop']);
    },
    async up() {
      await pgCtl(['-o', serverOptions, '-l', join(dir, 'server.log'), '-w', 'start']);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      try {
        await run(join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop'], { ...as, env });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
