// TimeStamp and newTid against persistent's C TimeStamp and ZODB.utils.newTid: raw bytes, accessors, str/repr,
// timeTime() to the bit, laterThan (its carry into the minute included) and the errors for bad dates.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { idHex, p64 } from '../../src/storage/ids.js';
import { newTid, preciseNow, tidTime, TimeStamp } from '../../src/storage/timestamp.js';
import { interopTest } from '../helpers/oracle.js';
import { mulberry32 } from '../helpers/prng.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const BIAS = 60 / 2 ** 32;
/** 1900-01-01 00:00 UTC in seconds: the first time a TimeStamp can hold. */
const MIN_TIME = Date.UTC(1900, 0, 1) / 1000;

type DateArgs = [number, number, number, number, number, number];
type Outcome = { raw: string } | { error: string };

function tsFromDate(args: DateArgs): Outcome {
  try {
    return { raw: hex(new TimeStamp(...args).raw()) };
  } catch (e) {
    return { error: (e as Error).name };
  }
}

test('known values: layout, accessors, str and repr', () => {
  const ts = new TimeStamp(2024, 1, 1, 0, 0, 59.99999999);
  assert.equal(hex(ts.raw()), '03f58e00ffffffff');
  assert.equal(ts.toString(), '2024-01-01 00:00:60.000000');
  assert.equal(ts.repr(), "b'\\x03\\xf5\\x8e\\x00\\xff\\xff\\xff\\xff'");
  assert.equal(ts.timeTime(), 1704067260);
  const t2 = new TimeStamp(2000, 2, 29, 23, 59, 30.5);
  assert.deepEqual(
    [t2.year(), t2.month(), t2.day(), t2.hour(), t2.minute(), t2.second()],
    [2000, 2, 29, 23, 59, 30.499999998137355],
  );
  // units = 2^23 is a tie at the sixth decimal (0.1171875): printf rounds half to even
  assert.equal(new TimeStamp(p64(2n ** 23n)).toString(), '1900-01-01 00:00:00.117188');
  assert.equal(new TimeStamp(p64(3n * 2n ** 23n)).toString(), '1900-01-01 00:00:00.351562');
});

test('laterThan: self when later, else other + 1, carrying into the next minute, day, month and year', () => {
  const a = new TimeStamp(2020, 5, 5, 5, 5, 5);
  const b = new TimeStamp(2020, 5, 5, 5, 5, 6);
  assert.equal(b.laterThan(a), b);
  assert.equal(hex(a.laterThan(b).raw()), hex(p64(BigInt('0x' + hex(b.raw())) + 1n)));
  const endOfYear = new TimeStamp(2020, 12, 31, 23, 59, 60 - BIAS / 2);
  assert.equal(hex(endOfYear.raw()).slice(8), 'ffffffff');
  assert.equal(new TimeStamp(2020, 1, 1).laterThan(endOfYear).toString(), '2021-01-01 00:00:00.000000');
  const feb28 = new TimeStamp(2021, 2, 28, 23, 59, 60 - BIAS / 2);
  assert.equal(new TimeStamp(2020, 1, 1).laterThan(feb28).toString(), '2021-03-01 00:00:00.000000');
});

test('newTid is later than the last tid even when the clock is behind', () => {
  const now = Date.UTC(2024, 6, 1, 12, 0, 0);
  const first = newTid(null, now);
  assert.equal(new TimeStamp(first).toString(), '2024-07-01 12:00:00.000000');
  const second = newTid(first, now);
  assert.equal(BigInt('0x' + idHex(second)), BigInt('0x' + idHex(first)) + 1n);
  const future = new TimeStamp(2030, 1, 1).raw();
  assert.equal(idHex(newTid(future, now)), hex(p64(BigInt('0x' + hex(future)) + 1n)));
});

test("newTid's tids are TimeStamp.fromTime's, across minutes, days and years, in any order", () => {
  const rand = mulberry32(11);
  const times: number[] = [];
  // around minute boundaries (before, on, after), forwards and backwards, and anywhere from 1901 to 2099
  for (const base of [Date.UTC(2024, 11, 31, 23, 59, 0), Date.UTC(2000, 1, 29, 0, 0, 0), 0]) {
    for (const d of [-60_000, -1, -0.25, 0, 0.25, 59_999.75, 60_000, 60_000.5, 1]) times.push(base + d);
  }
  // (from 1901 on: after `earlier` below)
  for (let i = 0; i < 2000; i++) times.push((MIN_TIME + (1 + rand() * 198) * 365.25 * 86400) * 1000);
  for (const ms of times) {
    const want = TimeStamp.fromTime(ms / 1000);
    assert.equal(idHex(newTid(null, ms)), hex(want.raw()), `at ${ms}`);
    // with a last tid after it, before it, and equal to it
    const later = new TimeStamp(2099, 1, 1);
    const earlier = new TimeStamp(1901, 1, 1);
    assert.equal(idHex(newTid(later.raw(), ms)), hex(want.laterThan(later).raw()));
    assert.equal(idHex(newTid(earlier.raw(), ms)), hex(want.raw()));
    assert.equal(idHex(newTid(want.raw(), ms)), hex(want.laterThan(want).raw()));
  }
  assert.throws(() => newTid(null, NaN), RangeError);
});

test('preciseNow: the wall clock with sub-millisecond resolution, and new tids after a time just read', () => {
  const values: number[] = [];
  for (let i = 0; i < 2000; i++) {
    const before = Date.now();
    const t = preciseNow();
    const after = Date.now();
    assert.ok(t >= before && t < after + 1, `${t} outside [${before}, ${after + 1})`);
    values.push(t);
  }
  const ms = new Set(values.map(Math.floor));
  assert.ok(new Set(values).size > ms.size, 'values within a millisecond differ');
  // a tid made after a time was read (as a client's pack time) is later than it, also within its millisecond
  for (let i = 0; i < 200; i++) {
    const read = preciseNow();
    while (preciseNow() === read);
    assert.ok(tidTime(newTid(null)) * 1000 > read - 0.001, 'a new tid is not before a time read earlier');
  }
});

test("preciseNow is the wall clock's time to well within a millisecond, wherever in it it is read", () => {
  // the real time is known best at the edge of a millisecond of Date.now() (that millisecond and a few
  // microseconds), and from there by the monotonic clock. Read 0.6 ms after an edge, then 0.7 ms after the
  // next one: a clock anchored at a whole millisecond when it was read mid-millisecond stays behind the real
  // time by the part of that millisecond gone. The median of many trials (a descheduled process measures some
  // trials late, never early).
  const errors: number[] = [];
  const readAt = (edge: number, mono0: number, ms: number): number => {
    while (performance.now() - mono0 < ms);
    const before = performance.now();
    const t = preciseNow();
    const after = performance.now();
    return t - (edge + (before + after) / 2 - mono0);
  };
  while (errors.length < 30) {
    const w = Date.now();
    while (Date.now() === w);
    const mono0 = performance.now();
    if (Date.now() !== w + 1) continue;
    errors.push(Math.abs(readAt(w + 1, mono0, 0.6)), Math.abs(readAt(w + 1, mono0, 1.7)));
  }
  errors.sort((x, y) => x - y);
  const median = errors[errors.length >> 1];
  assert.ok(median < 0.15, `preciseNow is ${median.toFixed(3)} ms off the real time (median)`);
});

test('bad dates are refused as the C TimeStamp refuses them', () => {
  assert.throws(() => new TimeStamp(1899, 12, 31), RangeError);
  assert.throws(() => new TimeStamp(2023, 2, 29), RangeError);
  assert.throws(() => new TimeStamp(2024, 13, 1), RangeError);
  assert.throws(() => new TimeStamp(2024, 1, 1, 24), RangeError);
  assert.throws(() => new TimeStamp(2024, 1, 1, 0, 60), RangeError);
  assert.throws(() => new TimeStamp(new Uint8Array(7)), RangeError);
});

/** Dates: random ones, and the edges of minutes, days, months and years, leap and not. */
function dateCases(): DateArgs[] {
  const r = mulberry32(20240229);
  const cases: DateArgs[] = [];
  const secondsEdges = [
    0,
    BIAS,
    BIAS * 0.999,
    30,
    59,
    59.999999,
    59.99999999,
    60 - 2 ** -46,
    60,
    61,
    -1.5,
    -0.0,
    1e12,
    1e20,
  ];
  for (const year of [
    1900, 1901, 1904, 1970, 1999, 2000, 2001, 2004, 2023, 2024, 2100, 2400, 9917, 9999, 10000,
  ]) {
    for (const [month, day] of [
      [1, 1],
      [1, 31],
      [2, 28],
      [2, 29],
      [2, 30],
      [4, 30],
      [4, 31],
      [12, 31],
      [12, 32],
      [0, 1],
      [13, 1],
      [6, 0],
    ]) {
      for (const [hour, minute] of [
        [0, 0],
        [23, 59],
        [12, 30],
        [24, 0],
        [0, 60],
      ]) {
        cases.push([year, month, day, hour, minute, secondsEdges[Math.floor(r() * secondsEdges.length)]]);
      }
    }
  }
  cases.push([1899, 12, 31, 23, 59, 59]);
  for (const s of secondsEdges) cases.push([2024, 2, 29, 23, 59, s]);
  for (let i = 0; i < 3000; i++) {
    const year = 1900 + Math.floor(r() * 300);
    const month = 1 + Math.floor(r() * 12);
    const day = 1 + Math.floor(r() * 31);
    cases.push([year, month, day, Math.floor(r() * 24), Math.floor(r() * 60), r() * 60]);
  }
  return cases;
}

/** Raw tids: random bytes, and seconds parts at their edges (all ones: laterThan's carry). */
function rawCases(): string[] {
  const r = mulberry32(4242);
  const out: string[] = [];
  const byte = (): string =>
    Math.floor(r() * 256)
      .toString(16)
      .padStart(2, '0');
  for (let i = 0; i < 1500; i++) {
    // keep the minutes part within real dates most of the time (its top byte ~0x00-0x08)
    const top = (r() < 0.9 ? Math.floor(r() * 9) : Math.floor(r() * 256)).toString(16).padStart(2, '0');
    out.push(top + byte() + byte() + byte() + byte() + byte() + byte() + byte());
  }
  for (const [y, mo, d, h, mi] of [
    [2020, 12, 31, 23, 59],
    [2021, 2, 28, 23, 59],
    [2020, 2, 28, 23, 59],
    [2020, 2, 29, 23, 59],
    [2021, 1, 31, 23, 59],
    [2021, 4, 30, 23, 59],
    [2021, 4, 30, 22, 59],
    [2021, 4, 30, 23, 58],
    [1900, 2, 28, 23, 59],
    [2000, 2, 28, 23, 59],
  ]) {
    const minutes = hex(new TimeStamp(y, mo, d, h, mi, 0).raw()).slice(0, 8);
    for (const sec of ['ffffffff', 'fffffffe', '00000000', '80000000', '00ffffff']) out.push(minutes + sec);
  }
  out.push('0000000000000000', 'ffffffffffffffff', '7fffffffffffffff');
  // a raw date past the end of its month (Feb 30) with all-ones seconds: laterThan must refuse it like C
  const feb30 = (((2021 - 1900) * 12 + 1) * 31 + 29) * 1440 + 1439;
  out.push(feb30.toString(16).padStart(8, '0') + 'ffffffff');
  return out;
}

/** Times in milliseconds: random across 1900-2200 and the last moments of minutes, days, months and years. */
function timeCases(): number[] {
  const r = mulberry32(77);
  const out: number[] = [];
  for (let i = 0; i < 1500; i++) out.push(Math.floor(Date.UTC(1900, 0, 1) + r() * 300 * 365.25 * 86400e3));
  for (const [y, mo, d] of [
    [1900, 1, 1],
    [1970, 1, 1],
    [2000, 2, 29],
    [2024, 2, 29],
    [2023, 2, 28],
    [2100, 2, 28],
    [2023, 12, 31],
    [2024, 4, 30],
  ]) {
    const midnight = Date.UTC(y, mo - 1, d);
    for (const delta of [0, 1, 999, 59_999, 60_000, 86_399_999, 86_400_000 - 1, 3_599_999]) {
      out.push(midnight + delta);
    }
    out.push(midnight + 86_399_999.5, midnight + 59_999.999);
  }
  return out;
}

interopTest('TimeStamp(y, m, d, h, mi, s) gives the C TimeStamp raw bytes (or its error)', async (oracle) => {
  const cases = dateCases();
  const py = await oracle.json<Outcome[]>(
    `from persistent.timestamp import TimeStamp
result = []
for y, mo, d, h, mi, s in args:
    try:
        result.append({'raw': TimeStamp(y, mo, d, h, mi, float(s)).raw().hex()})
    except ValueError:
        result.append({'error': 'RangeError'})`,
    undefined,
    cases,
  );
  assert.equal(py.length, cases.length);
  let errors = 0;
  for (let i = 0; i < cases.length; i++) {
    const ours = tsFromDate(cases[i]);
    if ('error' in ours) errors++;
    assert.deepEqual(ours, py[i], `TimeStamp(${cases[i].join(', ')})`);
  }
  assert.ok(errors > 100 && errors < cases.length / 2, `both valid and invalid dates were tried (${errors})`);
});

interopTest('raw tids: accessors, str, repr, timeTime() and laterThan agree with Python', async (oracle) => {
  const raws = rawCases();
  const r = mulberry32(99);
  // laterThan against the next raw (often earlier, often later), itself, and its predecessor
  const pairs: Array<[string, string]> = [];
  for (let i = 0; i < raws.length; i++) {
    pairs.push([raws[i], raws[(i + 1) % raws.length]], [raws[i], raws[i]]);
    pairs.push([raws[Math.floor(r() * raws.length)], raws[i]]);
  }
  type PyTs = [number, number, number, number, number, number, number, string, string];
  const py = await oracle.json<{ ts: PyTs[]; later: Array<string | null> }>(
    `from persistent.timestamp import TimeStamp
raws, pairs = args
ts = []
for h in raws:
    t = TimeStamp(bytes.fromhex(h))
    ts.append([t.year(), t.month(), t.day(), t.hour(), t.minute(), t.second(), t.timeTime(), str(t), repr(t)])
later = []
for a, b in pairs:
    try:
        later.append(TimeStamp(bytes.fromhex(a)).laterThan(TimeStamp(bytes.fromhex(b))).raw().hex())
    except ValueError:
        later.append(None)
result = {'ts': ts, 'later': later}`,
    undefined,
    [raws, pairs],
  );
  for (let i = 0; i < raws.length; i++) {
    const t = new TimeStamp(Buffer.from(raws[i], 'hex'));
    const ours = [
      t.year(),
      t.month(),
      t.day(),
      t.hour(),
      t.minute(),
      t.second(),
      t.timeTime(),
      String(t),
      t.repr(),
    ];
    assert.deepEqual(ours, py.ts[i], raws[i]);
  }
  let refused = 0;
  for (let i = 0; i < pairs.length; i++) {
    const [a, b] = pairs[i];
    let ours: string | null;
    try {
      ours = hex(new TimeStamp(Buffer.from(a, 'hex')).laterThan(new TimeStamp(Buffer.from(b, 'hex'))).raw());
    } catch (e) {
      assert.ok(e instanceof RangeError);
      ours = null;
      refused++;
    }
    assert.equal(ours, py.later[i], `${a}.laterThan(${b})`);
  }
  assert.ok(refused >= 1, 'the past-the-end-of-month carry was tried');
});

interopTest(
  'newTid(last, now) is ZODB.utils.newTid at that time; fromTime is pack()s conversion',
  async (oracle) => {
    const times = timeCases();
    const r = mulberry32(5);
    const lasts: Array<string | null> = times.map((ms, i) => {
      const pick = i % 4;
      if (pick === 0) return null;
      if (pick === 1) return hex(TimeStamp.fromTime(Math.max(ms / 1000 - r() * 10, MIN_TIME)).raw()); // earlier: the clock wins
      if (pick === 2) return hex(TimeStamp.fromTime(ms / 1000).raw()); // equal: last + 1
      return hex(TimeStamp.fromTime(ms / 1000 + r() * 100).raw()); // later: last + 1
    });
    const py = await oracle.json<Array<[string, string, number]>>(
      `import time
from unittest import mock
import ZODB.utils
from persistent.timestamp import TimeStamp
result = []
for ms, last in args:
    t = ms / 1000
    with mock.patch.object(ZODB.utils.time, 'time', lambda: t):
        tid = ZODB.utils.newTid(None if last is None else bytes.fromhex(last))
    packstop = TimeStamp(*time.gmtime(t)[:5] + (t % 60,))
    result.append([tid.hex(), packstop.raw().hex(), TimeStamp(tid).timeTime()])`,
      undefined,
      times.map((ms, i) => [ms, lasts[i]]),
    );
    for (let i = 0; i < times.length; i++) {
      const last = lasts[i];
      const tid = newTid(last === null ? null : Buffer.from(last, 'hex'), times[i]);
      assert.equal(hex(tid), py[i][0], `newTid(${last}, ${times[i]})`);
      assert.equal(hex(TimeStamp.fromTime(times[i] / 1000).raw()), py[i][1], `fromTime(${times[i] / 1000})`);
      assert.equal(new TimeStamp(tid).timeTime(), py[i][2]);
    }
  },
);
