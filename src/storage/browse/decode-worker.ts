// The object browser's decode worker (offload.ts): runs the pure decoding jobs of decode.ts on the records the
// main thread sends, and answers with their JSON-able results or the error's name and message.
import { parentPort } from 'node:worker_threads';
import { DECODE_JOBS } from './decode.js';
import type { DecodeAnswer, DecodeRequest } from './offload.js';

const port = parentPort;
if (!port) throw new Error('decode-worker.js runs as a worker thread only');

port.on('message', (req: DecodeRequest) => {
  let answer: DecodeAnswer;
  try {
    const job = DECODE_JOBS[req.op] as (stored: Uint8Array, args: unknown) => unknown;
    answer = { id: req.id, result: job(req.stored, req.args) };
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    answer = { id: req.id, error: { name: err.name, message: err.message } };
  }
  port.postMessage(answer);
});
