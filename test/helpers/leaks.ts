// What a leak leaves in this process: timers and sockets (process.getActiveResourcesInfo). A handle closed a
// moment ago stays listed until the event loop has run its close callback, so the check waits a little.

import assert from 'node:assert/strict';

export interface Handles {
  timers: number;
  sockets: number;
}

export function handles(): Handles {
  const r = process.getActiveResourcesInfo();
  return {
    timers: r.filter((x) => x === 'Timeout').length,
    sockets: r.filter((x) => x === 'TCPSocketWrap' || x === 'PipeWrap' || x === 'TLSWrap').length,
  };
}

/** Fails unless the timers and sockets come back to `before` within `ms` (closes still settling). */
export async function assertNoLeaks(before: Handles, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  let now = handles();
  while ((now.timers !== before.timers || now.sockets !== before.sockets) && Date.now() < deadline) {
    await new Promise((r) => setImmediate(r));
    now = handles();
  }
  assert.deepEqual(now, before, 'no timer or socket left');
}
