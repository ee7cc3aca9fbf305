// Where the browser's decoding runs: a small record inline (microseconds), a big one in one worker thread, so
// that a view of a 100,000-reference list never holds the server's event loop (and its ZEO clients) for the
// whole decode. The worker is made on first need, unref'd while idle, and terminated by close(). Its queue is
// bounded (BrowseBusyError past it: a 503), and a record above the ceiling is not decoded at all.
import { Worker } from 'node:worker_threads';
import { inflateSync } from 'node:zlib';
import {
  DECODE_JOBS,
  hugeRecordAnalysis,
  type DecodeArgs,
  type DecodeOp,
  type DecodeResult,
} from './decode.js';
import { BrowseInputError } from './read.js';
import { MAX_INFLATED } from './record.js';
import { isZlibRecord, PickleError } from '../../pickle/index.js';

/** Too many decodes waiting for the worker: try again later (a 503). */
export class BrowseBusyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BrowseBusyError';
  }
}

/** A record above the decoder's ceiling asked for its items: it is never decoded. */
export class RecordTooLargeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RecordTooLargeError';
  }
}

export interface DecoderOptions {
  /** records larger than this (bytes as stored) decode in the worker; default 64 KiB */
  threshold?: number;
  /** records larger than this are not decoded; default 64 MiB */
  ceiling?: number;
  /** decodes the worker may hold, running and waiting; default 4 */
  maxJobs?: number;
}

export const DECODE_THRESHOLD = 64 * 1024;
export const DECODE_CEILING = MAX_INFLATED;

/** A message to the worker, and its answer. */
export interface DecodeRequest {
  id: number;
  op: DecodeOp;
  stored: Uint8Array;
  args: unknown;
}
export type DecodeAnswer =
  { id: number; result: unknown } | { id: number; error: { name: string; message: string } };

const WORKER_SCRIPT = new URL('./decode-worker.js', import.meta.url);

/**
 * The worker's heap: a young generation big enough that decoding a record of 100,000 objects is not mostly
 * scavenges (with the default, the worker spent twice inline's CPU, most of it collecting), and an old
 * generation bounded (records are inflated to MAX_INFLATED at most), so that a record whose objects need more
 * kills the worker (its decodes fail, the next one starts a new worker), not the server.
 */
const WORKER_LIMITS = { maxYoungGenerationSizeMb: 64, maxOldGenerationSizeMb: 1024 };

interface Job {
  resolve(v: unknown): void;
  reject(e: Error): void;
}

/** The error the worker reported, as the caller would have seen it inline. */
function remoteError(e: { name: string; message: string }): Error {
  if (e.name === 'BrowseInputError') return new BrowseInputError(e.message);
  if (e.name === 'PickleError') return new PickleError(e.message, -1);
  return new Error(`the decode worker failed: ${e.message}`);
}

export class RecordDecoder {
  readonly threshold: number;
  readonly ceiling: number;
  readonly maxJobs: number;
  private worker: Worker | null = null;
  private readonly jobs = new Map<number, Job>();
  private nextId = 1;
  private closed = false;

  constructor(options: DecoderOptions = {}) {
    this.threshold = options.threshold ?? DECODE_THRESHOLD;
    this.ceiling = options.ceiling ?? DECODE_CEILING;
    this.maxJobs = options.maxJobs ?? 4;
  }

  /** decodes given to the worker and not answered yet */
  get pending(): number {
    return this.jobs.size;
  }

  /** whether the worker thread exists now */
  get hasWorker(): boolean {
    return this.worker !== null;
  }

  /** Runs `op` on the record: inline when small, in the worker when big; above the ceiling, from its head. */
  async run<K extends DecodeOp>(op: K, stored: Uint8Array, args: DecodeArgs<K>): Promise<DecodeResult<K>> {
    if (stored.length > this.ceiling) {
      if (op === 'view') return hugeRecordAnalysis(stored, this.ceiling) as DecodeResult<K>;
      throw new RecordTooLargeError(
        `the record is ${stored.length} bytes, above the browser's limit of ${this.ceiling}: its items are not listed`,
      );
    }
    if (!this.isBig(stored) || this.closed) {
      const job = DECODE_JOBS[op] as (s: Uint8Array, a: DecodeArgs<K>) => DecodeResult<K>;
      return job(stored, args);
    }
    if (this.jobs.size >= this.maxJobs) {
      throw new BrowseBusyError(
        `the object browser is busy decoding ${this.jobs.size} big records: try again`,
      );
    }
    const worker = this.start();
    const id = this.nextId++;
    // a copy: the storage's buffer (a cache's, a file read's) must not be detached from under it
    const copy = stored.slice();
    return new Promise<DecodeResult<K>>((resolve, reject) => {
      this.jobs.set(id, { resolve: resolve, reject });
      if (this.jobs.size === 1) worker.ref();
      const request: DecodeRequest = { id, op, stored: copy, args };
      worker.postMessage(request, [copy.buffer]);
    });
  }

  /** Above the threshold as stored, or (zc.zlibstorage) once inflated: a small record may inflate 1000-fold. */
  private isBig(stored: Uint8Array): boolean {
    if (stored.length > this.threshold) return true;
    if (!isZlibRecord(stored) || !Number.isFinite(this.threshold)) return false;
    try {
      // (bounded: inflating stops at the threshold)
      inflateSync(stored.subarray(2), { maxOutputLength: Math.max(Math.floor(this.threshold), 1) });
      return false;
    } catch {
      // past the threshold, or not inflating at all: the worker says which, as inline decoding would
      return true;
    }
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(WORKER_SCRIPT, { resourceLimits: WORKER_LIMITS });
    worker.unref();
    worker.on('message', (answer: DecodeAnswer) => {
      const job = this.jobs.get(answer.id);
      if (!job) return;
      this.jobs.delete(answer.id);
      if (this.jobs.size === 0) worker.unref();
      if ('error' in answer) job.reject(remoteError(answer.error));
      else job.resolve(answer.result);
    });
    const fail = (e: Error): void => {
      if (this.worker === worker) this.worker = null;
      for (const job of this.jobs.values()) job.reject(e);
      this.jobs.clear();
    };
    worker.on('error', (e) => fail(new Error(`the decode worker failed: ${e.message}`, { cause: e })));
    worker.on('exit', (code) => fail(new Error(`the decode worker exited (code ${code})`)));
    this.worker = worker;
    return worker;
  }

  /** Terminates the worker (decodes in flight fail); later decodes run inline. */
  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    this.worker = null;
    if (worker) await worker.terminate();
  }
}
