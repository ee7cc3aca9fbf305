// ZODB transaction ids as persistent's TimeStamp. This follows the C implementation (persistent/_timestamp.c),
// which is what ZODB runs: its laterThan carries into the minute when the seconds part is all ones (the pure
// Python fallback would fail there), and its timeTime() is plain double arithmetic (no microsecond rounding).
//
// Layout: the first 4 bytes are the minutes since 1900-01-01 00:00 UTC, counted as if every month had 31 days;
// the last 4 bytes are the seconds within the minute scaled by 2^32/60, truncated.

import { percentFormat, PyFloat, pyRepr } from '../pickle/index.js';
import type { Tid } from './ids.js';

/** 60 / 2^32 (exact in a double): one unit of the seconds part, in seconds. */
const SECOND_BYTES_BIAS = 60 / 0x10000 / 0x10000;
const BASE_YEAR = 1900;
const MINUTES_PER_DAY = 1440;
const MINUTES_PER_MONTH = 31 * MINUTES_PER_DAY;
const MINUTES_PER_YEAR = 12 * MINUTES_PER_MONTH;
const TWO32 = 0x1_0000_0000;

const MONTH_LEN = [
  [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31],
  [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31],
];
const JOFF = [
  [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334],
  [0, 31, 60, 91, 121, 152, 182, 213, 244, 274, 305, 335],
];

function leap(year: number): 0 | 1 {
  return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 1 : 0;
}

/** C's `/` on ints: truncates toward zero. */
function cdiv(a: number, b: number): number {
  return Math.trunc(a / b);
}

/** Days from 1901-01-01 to Jan 1 of `y`, as _timestamp.c's TimeStamp_yad (quirks kept). */
function yad(year: number): number {
  let y = year - BASE_YEAR;
  const d = (y - 1) * 365;
  let s: number;
  if (y > 0) {
    s = 1;
    y -= 1;
  } else {
    s = -1;
    y = -y;
  }
  return d + s * (cdiv(y, 4) - cdiv(y, 100) + cdiv(y + 300, 400));
}

/** _timestamp.c's TimeStamp_abst: seconds since 1901-01-01 for a 0-based month and day, minutes into the day. */
function abst(y: number, mo: number, d: number, m: number, s: number): number {
  return (yad(y) + JOFF[leap(y)][mo] + d) * 86400 + m * 60 + s;
}

/** abst() of gmtime(0): the epoch, as the C module computes it when it loads. */
const GMOFF = abst(1970, 0, 0, 0, 0);

/**
 * C's `(unsigned int)x` for a double, as gcc compiles it on x86-64 (cvttsd2si into 64 bits, keep the low 32):
 * truncation toward zero, then modulo 2^32; out of the int64 range (or NaN) gives 0.
 */
function cUint32(x: number): number {
  if (!(Math.abs(x) < 2 ** 63)) return 0;
  const t = Math.trunc(x);
  if (Math.abs(t) < 2 ** 53) return ((t % TWO32) + TWO32) % TWO32;
  return Number(BigInt.asUintN(32, BigInt(t)));
}

/** Python's float `%`: the result takes the sign of the divisor. */
function pyMod(x: number, m: number): number {
  const r = x % m;
  return r !== 0 && r < 0 !== m < 0 ? r + m : r;
}

export class TimeStamp {
  private readonly data: Uint8Array;

  /** From the raw 8 bytes (a tid). */
  constructor(raw: Uint8Array);
  /** From a UTC date; `second` may be fractional (and, as in C, any value: it is scaled and truncated). */
  constructor(year: number, month: number, day: number, hour?: number, minute?: number, second?: number);
  constructor(a: Uint8Array | number, month?: number, day?: number, hour = 0, minute = 0, second = 0) {
    if (a instanceof Uint8Array) {
      if (a.length !== 8) throw new RangeError('8-byte array expected');
      this.data = new Uint8Array(a);
      return;
    }
    if (month === undefined || day === undefined)
      throw new TypeError('TimeStamp needs a year, month and day');
    this.data = fromDate(a, month, day, hour, minute, second);
  }

  /**
   * TimeStamp(*time.gmtime(t)[:5] + (t % 60,)): what ZODB makes of a time in seconds since the epoch (newTid,
   * and the pack time of pack(t)).
   */
  static fromTime(t: number): TimeStamp {
    const whole = Math.floor(t); // time.gmtime rounds toward -inf
    const d = new Date(whole * 1000);
    if (Number.isNaN(d.getTime())) throw new RangeError(`time out of range: ${t}`);
    return new TimeStamp(
      d.getUTCFullYear(),
      d.getUTCMonth() + 1,
      d.getUTCDate(),
      d.getUTCHours(),
      d.getUTCMinutes(),
      pyMod(t, 60),
    );
  }

  /** The 8 bytes (a copy). */
  raw(): Uint8Array {
    return new Uint8Array(this.data);
  }

  private minutes(): number {
    const b = this.data;
    return ((b[0] << 24) >>> 0) + (b[1] << 16) + (b[2] << 8) + b[3];
  }

  private units(): number {
    const b = this.data;
    return ((b[4] << 24) >>> 0) + (b[5] << 16) + (b[6] << 8) + b[7];
  }

  year(): number {
    return Math.floor(this.minutes() / MINUTES_PER_YEAR) + BASE_YEAR;
  }
  month(): number {
    return Math.floor((this.minutes() % MINUTES_PER_YEAR) / MINUTES_PER_MONTH) + 1;
  }
  day(): number {
    return Math.floor((this.minutes() % MINUTES_PER_MONTH) / MINUTES_PER_DAY) + 1;
  }
  hour(): number {
    return Math.floor((this.minutes() % MINUTES_PER_DAY) / 60);
  }
  minute(): number {
    return (this.minutes() % MINUTES_PER_DAY) % 60;
  }
  /** Seconds within the minute (units * 60/2^32: exact in a double). */
  second(): number {
    return SECOND_BYTES_BIAS * this.units();
  }

  /** Seconds since the epoch, to the bit what the C TimeStamp.timeTime() returns. */
  timeTime(): number {
    const mi = this.minutes() % MINUTES_PER_DAY;
    return abst(this.year(), this.month() - 1, this.day() - 1, mi, 0) + this.second() - GMOFF;
  }

  /** This one if it is later than `other`, else the smallest timestamp after `other`. */
  laterThan(other: TimeStamp): TimeStamp {
    if (compareBytes(this.data, other.data) > 0) return this;
    const next = new Uint8Array(other.data);
    for (let i = 7; i > 3; i--) {
      if (next[i] === 255) next[i] = 0;
      else {
        next[i]++;
        return new TimeStamp(next);
      }
    }
    // the seconds part was all ones: move to the next minute (real month lengths, as the C code does)
    let y = other.year();
    let m = other.month();
    let d = other.day();
    let mi = other.minutes() % MINUTES_PER_DAY;
    if (mi >= 1439) {
      mi = 0;
      if (d === MONTH_LEN[leap(y)][m - 1]) {
        d = 1;
        if (m === 12) {
          m = 1;
          y++;
        } else m++;
      } else d++;
    } else mi++;
    return new TimeStamp(y, m, d, Math.floor(mi / 60), mi % 60, 0);
  }

  compare(other: TimeStamp): number {
    return compareBytes(this.data, other.data);
  }

  equals(other: TimeStamp): boolean {
    return compareBytes(this.data, other.data) === 0;
  }

  /** Python's str(): '%4.4d-%2.2d-%2.2d %2.2d:%2.2d:%09.6f'. */
  toString(): string {
    const p2 = (n: number): string => String(n).padStart(2, '0');
    return (
      `${String(this.year()).padStart(4, '0')}-${p2(this.month())}-${p2(this.day())} ` +
      `${p2(this.hour())}:${p2(this.minute())}:${formatSeconds(this.units())}`
    );
  }

  /** Python's repr(): the repr of the raw bytes. */
  repr(): string {
    return pyRepr(this.data);
  }
}

function fromDate(
  year: number,
  month: number,
  day: number,
  hour: number,
  min: number,
  sec: number,
): Uint8Array {
  for (const [name, v] of [
    ['year', year],
    ['month', month],
    ['day', day],
    ['hour', hour],
    ['minute', min],
  ] as const) {
    if (!Number.isInteger(v)) throw new TypeError(`${name} must be an integer: ${v}`);
  }
  if (year < BASE_YEAR) throw new RangeError(`year must be greater than ${BASE_YEAR}: ${year}`);
  if (month < 1 || month > 12) throw new RangeError(`month must be between 1 and 12: ${month}`);
  const dim = MONTH_LEN[leap(year)][month - 1];
  if (day < 1 || day > dim) throw new RangeError(`day must be between 1 and ${dim}: ${day}`);
  if (hour < 0 || hour > 23) throw new RangeError(`hour must be between 0 and 23: ${hour}`);
  if (min < 0 || min > 59) throw new RangeError(`min must be between 0 and 59: ${min}`);
  // unsigned int arithmetic in C: wraps modulo 2^32 for years past ~9917 (exact here: < 2^53 before the mod)
  const minutes = ((((year - BASE_YEAR) * 12 + (month - 1)) * 31 + (day - 1)) * 24 + hour) * 60 + min;
  const a = minutes % TWO32;
  const b = cUint32(sec / SECOND_BYTES_BIAS);
  const out = new Uint8Array(8);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, a);
  dv.setUint32(4, b);
  return out;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < 8; i++) {
    const d = a[i] - b[i];
    if (d !== 0) return d;
  }
  return 0;
}

/** '%09.6f' of units * 60/2^32 (exact in a double: units < 2^32) as Python prints it, ties to even. */
function formatSeconds(units: number): string {
  const seconds = new PyFloat((units * 15) / 2 ** 30);
  return percentFormat('%(s)09.6f', () => seconds);
}

/**
 * The wall clock's time (ms since the epoch) at the monotonic clock's zero: performance.timeOrigin, which has
 * microseconds (Date.now() read once would leave every later time behind by up to a millisecond: the part of
 * its millisecond already gone). Moved only when the wall clock is stepped ahead of it.
 */
let origin = performance.timeOrigin;

/**
 * Milliseconds since the epoch with the sub-millisecond part Python's time.time() has and Date.now() lacks:
 * the monotonic clock from the wall clock's origin, kept within the wall clock's millisecond. ZODB stamps a
 * transaction with time.time(): a commit made just after a client (on this machine) read the time, a pack
 * time say, must get a tid after it (ZODB's testTransactionalUndoAfterPack packs at such a time).
 */
export function preciseNow(): number {
  const mono = performance.now();
  const wall = Date.now();
  const t = origin + mono;
  if (t < wall) {
    // the wall clock was stepped ahead: follow it (to its millisecond, all a step leaves known)
    origin = wall - mono;
    return wall;
  }
  // (the monotonic clock ran ahead of a wall clock set back or slowed: wait for the wall clock)
  return t < wall + 1 ? t : wall + 0.999;
}

/**
 * ZODB.utils.newTid: the tid for a transaction starting at `now` (milliseconds since the epoch, as Date.now()),
 * made later than `last` when the clock gives one that is not.
 */
export function newTid(last: Tid | null, now: number = preciseNow()): Tid {
  const t = now / 1000;
  // TimeStamp.fromTime(t).raw(), with its first four bytes (the date down to the minute, from gmtime) made once
  // a minute: a commit's tid costs no Date, no TimeStamp and no checks of the date's fields
  const minute = Math.floor(Math.floor(t) / 60);
  if (minute !== tidMinute) {
    const raw = TimeStamp.fromTime(t).raw();
    tidMinuteBytes = ((raw[0] << 24) >>> 0) + (raw[1] << 16) + (raw[2] << 8) + raw[3];
    tidMinute = minute;
  }
  const tid = new Uint8Array(8);
  writeU32(tid, 0, tidMinuteBytes);
  writeU32(tid, 4, cUint32(pyMod(t, 60) / SECOND_BYTES_BIAS));
  if (last !== null && compareBytes(tid, last) <= 0)
    return new TimeStamp(tid).laterThan(new TimeStamp(last)).raw();
  return tid;
}

/** newTid's last minute (whole minutes since the epoch) and the first four bytes of its tids */
let tidMinute = NaN;
let tidMinuteBytes = 0;

function writeU32(b: Uint8Array, at: number, v: number): void {
  b[at] = v >>> 24;
  b[at + 1] = (v >>> 16) & 0xff;
  b[at + 2] = (v >>> 8) & 0xff;
  b[at + 3] = v & 0xff;
}

/** The time of a tid, in seconds since the epoch (ZODB's TimeStamp(tid).timeTime()). */
export function tidTime(tid: Tid): number {
  return new TimeStamp(tid).timeTime();
}
