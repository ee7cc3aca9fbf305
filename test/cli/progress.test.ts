import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  formatBytes,
  formatDuration,
  formatProgressLine,
  formatRate,
  percentOf,
  ProgressBar,
  type ProgressStream,
} from '../../src/cli/progress.js';

class FakeStream implements ProgressStream {
  out: string[] = [];
  constructor(
    public isTTY: boolean,
    public columns = 80,
  ) {}
  write(chunk: string): boolean {
    this.out.push(chunk);
    return true;
  }
}

test('formatBytes: binary units, three significant digits, no "1024 KiB"', () => {
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(999), '999 B');
  assert.equal(formatBytes(1023), '1023 B');
  assert.equal(formatBytes(1024), '1.00 KiB');
  assert.equal(formatBytes(1536), '1.50 KiB');
  assert.equal(formatBytes(10 * 1024), '10.0 KiB');
  assert.equal(formatBytes(123.4 * 1024), '123 KiB');
  assert.equal(formatBytes(1023.9 * 1024), '1.00 MiB');
  assert.equal(formatBytes(180934485), '173 MiB');
  assert.equal(formatBytes(5 * 1024 ** 3), '5.00 GiB');
  assert.equal(formatBytes(3 * 1024 ** 4), '3.00 TiB');
  assert.equal(formatBytes(-1), '? B');
  assert.equal(formatBytes(NaN), '? B');
});

test('formatRate and formatDuration', () => {
  assert.equal(formatRate(45.6 * 1024 * 1024), '45.6 MiB/s');
  assert.equal(formatRate(NaN), '-- B/s');
  assert.equal(formatRate(Infinity), '-- B/s');
  assert.equal(formatDuration(0), '0:00');
  assert.equal(formatDuration(7.4), '0:07');
  assert.equal(formatDuration(59.6), '1:00');
  assert.equal(formatDuration(754), '12:34');
  assert.equal(formatDuration(3723), '1:02:03');
  assert.equal(formatDuration(-1), '--:--');
  assert.equal(formatDuration(Infinity), '--:--');
  assert.equal(formatDuration(1e9), '--:--');
});

test('percentOf: floored, 100 only when done, null for an unknown total', () => {
  assert.equal(percentOf(0, 100), 0);
  assert.equal(percentOf(999, 1000), 99);
  assert.equal(percentOf(1000, 1000), 100);
  assert.equal(percentOf(2000, 1000), 100);
  assert.equal(percentOf(5, 0), null);
});

test('formatProgressLine: percentage, bar, bytes, rate and ETA; fits the terminal', () => {
  const mib = 1024 * 1024;
  const line = formatProgressLine({ label: 'verify', done: 50 * mib, total: 200 * mib, elapsedMs: 2000 });
  // 50 MiB in 2 s: 25 MiB/s, 150 MiB to go: 6 s
  assert.match(line, /^verify {2}25% \[#+\.+\] 50\.0 MiB \/ 200 MiB {2}25\.0 MiB\/s {2}ETA +0:06$/);
  assert.ok(line.length <= 79);
  const bar = /\[(#*)(\.*)\]/.exec(line)!;
  assert.equal(bar[1].length, Math.floor((bar[0].length - 2) / 4));
  // narrow terminals: the bar goes, then the line is cut, never past columns - 1
  for (const columns of [100, 60, 40, 21]) {
    const l = formatProgressLine({ label: 'verify', done: 1, total: 3, elapsedMs: 1000, columns });
    assert.ok(l.length <= columns - 1, `${columns}: ${l}`);
  }
  assert.doesNotMatch(
    formatProgressLine({ label: 'verify', done: 1, total: 3, elapsedMs: 1000, columns: 50 }),
    /\[/,
  );
  // at the start the rate and the ETA are unknown
  assert.match(
    formatProgressLine({ label: 'scan', done: 0, total: 10, elapsedMs: 0 }),
    /-- B\/s {2}ETA --:--$/,
  );
  // an unknown total: no percentage, no ETA
  assert.equal(
    formatProgressLine({ label: 'scan', done: 2048, total: 0, elapsedMs: 1000 }),
    'scan  2.00 KiB  2.00 KiB/s',
  );
  // done
  assert.match(formatProgressLine({ label: 'x', done: 10, total: 10, elapsedMs: 1000 }), /^x 100% \[#+\]/);
});

test('ProgressBar on a terminal: one line rewritten in place, at most every 100 ms, erased at the end', () => {
  let now = 0;
  const s = new FakeStream(true, 80);
  const bar = new ProgressBar({ label: 'verify', total: 1000, stream: s, now: () => now });
  for (let i = 0; i <= 1000; i++) {
    now = i; // 1 ms per update: 1000 updates in 1 s
    bar.update(i);
  }
  bar.finish();
  const draws = s.out.filter((c) => c.startsWith('\r') && c.length > 4);
  // 0, 100, ..., 900 and the final 100% (1000 is both a tick and complete)
  assert.ok(draws.length >= 10 && draws.length <= 12, `${draws.length} draws`);
  for (const d of draws) {
    assert.ok(d.endsWith('\x1b[K'));
    assert.ok(!d.includes('\n'));
  }
  assert.match(draws[draws.length - 1], /100%/);
  assert.equal(s.out[s.out.length - 1], '\r\x1b[K');
  // nothing after finish
  bar.update(5);
  assert.equal(s.out[s.out.length - 1], '\r\x1b[K');
});

test('ProgressBar off a terminal: nothing for quick work, milestone lines for long work', () => {
  let now = 0;
  const quick = new FakeStream(false);
  const bar = new ProgressBar({ label: 'verify', total: 100, stream: quick, now: () => now });
  for (let i = 0; i <= 100; i++) {
    now = i * 10; // 1 s in all
    bar.update(i);
  }
  bar.finish();
  assert.deepEqual(quick.out, []);

  now = 0;
  const slow = new FakeStream(false);
  const bar2 = new ProgressBar({ label: 'pack', total: 100, stream: slow, now: () => now });
  for (let i = 0; i <= 100; i++) {
    now = i * 200; // 20 s in all
    bar2.update(i);
  }
  bar2.finish();
  // 25% is reached at 5 s exactly: 25, 50, 75
  assert.equal(slow.out.length, 3);
  assert.match(slow.out[0], /^pack {2}25%.*\n$/);
  assert.match(slow.out[1], /^pack {2}50%/);
  assert.match(slow.out[2], /^pack {2}75%/);
});

test('ProgressBar disabled (--quiet) writes nothing', () => {
  const s = new FakeStream(true);
  const bar = new ProgressBar({ label: 'x', total: 10, stream: s, enabled: false });
  bar.update(5);
  bar.update(10);
  bar.finish();
  assert.deepEqual(s.out, []);
});
