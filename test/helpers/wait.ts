import assert from 'node:assert/strict';

/**
 * Polls `cond` every millisecond until it holds, failing after `timeoutMs`: for what happens in another
 * process, on the network or in the thread pool, which a loaded machine (CI's) can make slow. `what` names
 * it in the failure (a function: read when it fails, so it can show output gathered meanwhile).
 */
export async function waitUntil(
  cond: () => boolean,
  what: string | (() => string),
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting: ${typeof what === 'string' ? what : what()}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}
