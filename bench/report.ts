// Shared output for benchmarks: an aligned table on stdout; and what several benches share (medians, the
// oracle's Python, the Data.fs of the server and client benches).

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { oraclePython, repoRoot } from '../test/helpers/oracle.js';
import { ServerProcess, freePort, type ServerKind } from '../test/helpers/server-process.js';

/** "2.31x" when ours is faster (theirs / ours in time), "0.80x" when slower. */
export function ratio(theirSeconds: number, ourSeconds: number): string {
  return `${(theirSeconds / ourSeconds).toFixed(2)}x`;
}

export function printTable(title: string, header: string[], rows: Array<Array<string | number>>): void {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, c) => Math.max(...cells.map((r) => r[c].length)));
  const line = (r: string[]) =>
    r.map((x, c) => (c === 0 ? x.padEnd(widths[c]) : x.padStart(widths[c]))).join('  ');
  console.log(`\n${title}`);
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of cells.slice(1)) console.log(line(r));
  console.log('');
}

/** The median of some figures. */
export function median(values: number[]): number {
  const v = [...values].sort((a, b) => a - b);
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

/** "1.23x (1.10–1.40)": a ratio, with the range of the runs' own ratios when there are several. */
export function withRange(ratio: number, each: number[]): string {
  const text = `${ratio.toFixed(2)}x`;
  if (each.length < 2) return text;
  return `${text} (${Math.min(...each).toFixed(2)}–${Math.max(...each).toFixed(2)})`;
}

/** Runs the oracle's Python with `args` (through `prefix`, e.g. taskset); its stdout. */
export function runPython(args: string[], timeoutMs: number, prefix: string[] = []): string {
  const [cmd, argv] = prefix.length
    ? [prefix[0], [...prefix.slice(1), oraclePython(), ...args]]
    : [oraclePython(), args];
  const r = spawnSync(cmd, argv, { encoding: 'utf8', timeout: timeoutMs, cwd: repoRoot });
  if (r.error) throw new Error(`python ${args[0]}: ${r.error.message}`);
  if (r.status !== 0)
    throw new Error(`python ${args.slice(0, 2).join(' ')} failed (${r.status}):\n${r.stderr}`);
  return r.stdout;
}

/** The oracle's Python, ZEO and ZODB versions. */
export function oracleVersions(): { python: string; ZEO: string; ZODB: string } {
  return JSON.parse(
    runPython(
      [
        '-c',
        'import sys, json, importlib.metadata as m\n' +
          "print(json.dumps({'python': sys.version.split()[0], 'ZEO': m.version('ZEO'), 'ZODB': m.version('ZODB')}))",
      ],
      60_000,
    ),
  ) as { python: string; ZEO: string; ZODB: string };
}

export interface BenchDataFs {
  path: string;
  maxOid: number;
  objects: number;
}

/**
 * The server and client benches' Data.fs: `objects` PersistentMappings and `slots` client slots, built once
 * by Python's ZODB (test/fixtures/python/zeo_bench_client.py build) and kept in the system's temp directory
 * (`rebuild`: built again).
 */
export function benchDataFs(objects: number, slots: number, rebuild = false): BenchDataFs {
  const dir = join(tmpdir(), 'zeo-ts-bench-server');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${objects}.fs`);
  const marker = path + '.built';
  if (rebuild || !existsSync(marker) || !existsSync(path + '.index')) {
    for (const s of ['', '.index', '.lock', '.tmp', '.built']) rmSync(path + s, { force: true });
    process.stderr.write(`building ${path} (${objects} objects) with Python's ZODB...\n`);
    const build = resolve(repoRoot, 'test/fixtures/python/zeo_bench_client.py');
    const out = runPython([build, 'build', path, String(objects), String(slots)], 600_000);
    writeFileSync(marker, out.trim() + '\n');
  }
  const built = JSON.parse(readFileSync(marker, 'utf8')) as { maxOid: number; objects: number };
  return { path, ...built };
}

/** What every comparison with the oracle records about its run (the head of its JSON result). */
export function runRecord(
  bench: string,
  date: Date,
  versions: { python: string; ZEO: string; ZODB: string },
  figures: { loadAverageAtStart: number; benchSeconds: number },
): Record<string, unknown> {
  return {
    bench,
    date: date.toISOString(),
    node: process.version,
    python: versions.python,
    zeo: versions.ZEO,
    zodb: versions.ZODB,
    cpus: cpus().length,
    ...figures,
  };
}

/** Writes bench/results/<bench>-<date>.json and says so on stderr. */
export function writeResult(bench: string, date: Date, out: unknown, seconds: number): void {
  const dir = resolve(repoRoot, 'bench/results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${bench}-${date.toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify(out, null, 2) + '\n');
  process.stderr.write(`wrote ${relative(repoRoot, file)} (${seconds.toFixed(0)} s)\n`);
}

/** A process's user + system CPU seconds, all its threads (/proc/<pid>/stat fields 14 and 15). */
export function processCpu(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  // fields[0] is field 3 (state)
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

export interface BenchServer {
  kind: ServerKind;
  port: number;
  process: ServerProcess;
}

/**
 * runzeo or `zeo serve` over dir/Data.fs (an empty one, or the copy the caller put there) on a free loopback
 * port, at its defaults (durable commits), with `zeo` added to its <zeo> section (e.g. `msgpack true`).
 */
export async function startBenchServer(kind: ServerKind, dir: string, zeo = ''): Promise<BenchServer> {
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const conf = join(dir, 'zeo.conf');
  writeFileSync(
    conf,
    `<zeo>\n  address 127.0.0.1:${port}\n${zeo}</zeo>\n` +
      `<filestorage 1>\n  path ${join(dir, 'Data.fs')}\n</filestorage>\n`,
  );
  const p = new ServerProcess({ kind, conf, cwd: dir, env: { ZEO_MSGPACK: '' } });
  try {
    await p.port(60_000);
  } catch (e) {
    p.kill();
    throw e;
  }
  return { kind, port, process: p };
}
