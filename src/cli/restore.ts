// `zeo restore -r REPO -o Data.fs [-D DATE]`: repozo -R from a repository in repozo's format (written by
// `zeo backup` or by repozo): the newest full backup at or before the date and the incrementals after it,
// each checked against its .dat md5 while streamed to OUTPUT.part, renamed over OUTPUT only when all match;
// the backup's .index goes next to it. Exit 0 on success, 1 on an error (OUTPUT untouched).

import { Command } from 'commander';
import { phaseBars } from './backup.js';
import { formatBytes } from './progress.js';

interface RestoreCommandOptions {
  repository: string;
  output: string;
  date?: string;
  until?: string;
  withVerify?: boolean;
  quiet?: boolean;
  verbose?: boolean;
}

export function restoreCommand(): Command {
  return new Command('restore')
    .description(
      "restore a FileStorage data file from a repository in ZODB repozo's format (made by `zeo backup` or " +
        'repozo), checking every file against its md5; the output is replaced only once all of them match',
    )
    .requiredOption('-r, --repository <dir>', 'the directory holding the backups')
    .requiredOption('-o, --output <path>', 'the Data.fs to write (its .index is restored next to it)')
    .option(
      '-D, --date <date>',
      'restore the state as of this UTC date: yyyy-mm-dd[-hh[-mm[-ss]]] (default: the newest)',
    )
    .option(
      '--until <date>',
      'restore the state as of this UTC time exactly, yyyy-mm-dd[-hh[-mm[-ss[.ffffff]]]]: the backups that ' +
        'cover it, cut after the last transaction committed at or before it (no index: rebuilt on open)',
    )
    .option('-w, --with-verify', "repozo's flag, accepted: the sizes and md5s are always checked")
    .option('-q, --quiet', 'no progress bar and no summary')
    .option('-v, --verbose', 'name each file restored')
    .action(async (o: RestoreCommandOptions) => {
      const quiet = o.quiet ?? false;
      const bars = phaseBars(!quiet);
      const { restore } = await import('../storage/filestorage/repozo.js');
      try {
        const r = await restore({
          repository: o.repository,
          output: o.output,
          date: o.date ?? null,
          until: o.until ?? null,
          onProgress: bars.onProgress,
          log: o.verbose && !quiet ? (m) => console.error(`zeo restore: ${m}`) : undefined,
        });
        bars.finish();
        if (!quiet)
          console.log(
            `${o.output}: restored ${r.bytes} bytes (${formatBytes(r.bytes)}) from ${r.files.length} ` +
              `backup file${r.files.length === 1 ? '' : 's'}, up to ` +
              (r.cut ? `the last transaction at or before ${o.until}` : r.files[r.files.length - 1]) +
              (r.index ? '' : ' (no index: the storage rebuilds it on open)'),
          );
      } catch (e) {
        bars.finish();
        console.error(`zeo restore: ${(e as Error).message}`);
        process.exitCode = 1;
      }
    });
}
