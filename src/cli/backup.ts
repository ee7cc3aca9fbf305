// `zeo backup -r REPO -f Data.fs [-F] [-Q] [-z] [-k]`: repozo -B, in repozo's format (the core is
// src/storage/filestorage/repozo.ts): a full backup, or an incremental when the repository still holds the data
// file's first bytes. Safe while a server appends to the file: only complete transactions are copied.
// `zeo backup --verify -r REPO [-Q]`: repozo -V. Exit 0 on success, 1 on an error (printed on stderr).

import { Command } from 'commander';
import type { Phase, RepozoProgress } from '../storage/filestorage/repozo.js';
import { formatBytes, ProgressBar, type ProgressStream } from './progress.js';

const LABELS: Record<Phase, string> = {
  scan: 'scan',
  checksum: 'checksum',
  compare: 'compare',
  copy: 'backup',
  restore: 'restore',
  verify: 'verify',
};

/** One progress bar per phase of the work (a new bar when the phase changes); finish() ends the last. */
export function phaseBars(
  enabled: boolean,
  stream?: ProgressStream,
): { onProgress: RepozoProgress; finish: () => void } {
  let bar: ProgressBar | null = null;
  let phase: Phase | null = null;
  return {
    onProgress: (p, done, total) => {
      if (!enabled) return;
      if (p !== phase) {
        bar?.finish();
        phase = p;
        bar = new ProgressBar({ label: LABELS[p], total, stream });
      }
      bar!.update(done, total);
    },
    finish: () => bar?.finish(),
  };
}

interface BackupCommandOptions {
  repository: string;
  file?: string;
  full?: boolean;
  quick?: boolean;
  gzip?: boolean;
  killOldOnFull?: boolean;
  verify?: boolean;
  quiet?: boolean;
  verbose?: boolean;
}

export function backupCommand(): Command {
  return new Command('backup')
    .description(
      "back up a FileStorage data file in ZODB repozo's format (full and incremental backups, .dat and .index " +
        "files): repozo restores what this writes, and it adds to repozo's repositories. Safe while a server " +
        'writes to the file: only complete transactions are copied',
    )
    .requiredOption('-r, --repository <dir>', 'the directory holding the backups (it must exist)')
    .option('-f, --file <path>', 'the Data.fs to back up')
    .option('-F, --full', 'a full backup, even when an incremental could be made')
    .option(
      '-Q, --quick',
      "compare the data file with the last backup's md5 only, not with the whole repository (with --verify: " +
        'check sizes only)',
    )
    .option('-z, --gzip', 'compress the backup files (.fsz, .deltafsz)')
    .option('-k, --kill-old-on-full', 'after a full backup, delete the older backups from the repository')
    .option(
      '--verify',
      "check every file of the repository's newest chain against its size and md5 (repozo -V)",
    )
    .option('-q, --quiet', 'no progress bar and no summary')
    .option('-v, --verbose', 'say why a full backup was made')
    .action(async (o: BackupCommandOptions) => {
      const quiet = o.quiet ?? false;
      const bars = phaseBars(!quiet);
      const say = (s: string) => {
        if (!quiet) console.log(s);
      };
      const repozo = await import('../storage/filestorage/repozo.js');
      try {
        if (o.verify) {
          const lines = await repozo.verifyRepository({
            repository: o.repository,
            quick: o.quick,
            onProgress: bars.onProgress,
          });
          bars.finish();
          const bytes = lines.length ? lines[lines.length - 1].end : 0;
          say(`${o.repository}: OK: ${lines.length} files, ${bytes} bytes (${formatBytes(bytes)})`);
          return;
        }
        if (o.file === undefined) throw new repozo.RepozoError('--file is required to back up');
        const r = await repozo.backup({
          repository: o.repository,
          file: o.file,
          full: o.full,
          quick: o.quick,
          gzip: o.gzip,
          killOld: o.killOldOnFull,
          onProgress: bars.onProgress,
          log: o.verbose && !quiet ? (m) => console.error(`zeo backup: ${m}`) : undefined,
        });
        bars.finish();
        if (r.kind === 'none') say(`${o.file}: no changes since the last backup, nothing to do`);
        else
          say(
            `${r.kind === 'full' ? 'full' : 'incremental'} backup ${r.name}: bytes ${r.start} to ${r.end} ` +
              `(${formatBytes(r.end - r.start)}) of ${o.file}` +
              (r.kind === 'full' && o.verbose ? ` (${r.reason})` : ''),
          );
      } catch (e) {
        bars.finish();
        console.error(`zeo backup: ${(e as Error).message}`);
        process.exitCode = 1;
      }
    });
}
