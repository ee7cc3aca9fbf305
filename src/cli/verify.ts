// `zeo verify PATH`: prints what fstest (src/storage/filestorage/fstest.ts: ZODB's fstest.py with the checks of
// ZODB's own reader) finds in a Data.fs, with a progress bar; exit 0 when sound, 1 at the first error.

import { Command } from 'commander';
import type { VerifyResult } from '../storage/filestorage/fstest.js';
import { formatBytes, ProgressBar } from './progress.js';

/** The one-line summary of a sound file. */
export function summaryLine(path: string, r: VerifyResult): string {
  const n = (x: number) => x.toLocaleString('en-US');
  const magic = r.magic === 'FS21' ? ' (FS21: written by ZODB on Python 2)' : '';
  return (
    `${path}: OK: ${n(r.transactions)} transactions, ${n(r.records)} data records, ` +
    `${n(r.bytes)} bytes (${formatBytes(r.bytes)})${magic}`
  );
}

export function verifyCommand(): Command {
  return new Command('verify')
    .description(
      'check the structure of a FileStorage data file (Data.fs) as ZODB fstest does: transaction and data ' +
        'record headers, lengths, statuses, pointers. Exit 0 when sound, 1 at the first structural error ' +
        '(named by its byte offset), 2 when the file cannot be read',
    )
    .argument('<path>', 'the Data.fs to check')
    .option('-q, --quiet', 'no progress bar, no summary, no warnings: only errors, and the exit status')
    .action(async (path: string, opts: { quiet?: boolean }) => {
      const quiet = opts.quiet ?? false;
      const bar = new ProgressBar({ label: 'verify', total: 0, enabled: !quiet });
      const { verifyDataFile } = await import('../storage/filestorage/fstest.js');
      let r: VerifyResult;
      try {
        r = await verifyDataFile(path, { onProgress: (done, total) => bar.update(done, total) });
      } catch (e) {
        bar.finish();
        console.error(`zeo verify: ${path}: ${(e as Error).message}`);
        process.exitCode = 2;
        return;
      }
      bar.finish();
      if (!quiet) {
        for (const w of r.warnings)
          console.error(`zeo verify: warning: ${path}: ${w.message} (at byte ${w.offset})`);
        if (r.warningCount > r.warnings.length) {
          console.error(`zeo verify: warning: ... and ${r.warningCount - r.warnings.length} more`);
        }
      }
      if (r.error) {
        console.error(`zeo verify: ${r.error.message}`);
        if (!quiet) {
          console.error(
            `zeo verify: checked ${r.transactions} transactions and ${r.records} data records before byte ${r.error.offset}` +
              (r.recoverable
                ? '; this looks like a commit interrupted by a crash: opening the storage for writing truncates it'
                : ''),
          );
        }
        process.exitCode = 1;
        return;
      }
      if (!quiet) console.log(summaryLine(path, r));
    });
}
