// Gives memory back once a heavy load is over. V8 collects garbage only when it allocates, so a server that goes
// idle after a hostile burst (megabytes of replies a client never read, a huge decoded message) would keep
// that garbage, and the pages under it, for as long as it stays idle; runzeo's reference counting frees at once.
// After a burst, one full collection is run when the server has been quiet for a moment.

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let collect: (() => void) | null | undefined;

/** The engine's full collection: --expose-gc's gc(), obtained without the flag on the command line. */
function gcFunction(): (() => void) | null {
  if (collect !== undefined) return collect;
  try {
    setFlagsFromString('--expose-gc');
    collect = runInNewContext('gc') as () => void;
  } catch {
    collect = null;
  }
  return collect;
}

export class MemoryReclaimer {
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly quietMs = 1000) {}

  /** Something large became garbage (or will soon): collect once things are quiet. */
  burst(): void {
    if (this.timer) this.timer.refresh();
    else {
      this.timer = setTimeout(() => {
        this.timer = null;
        gcFunction()?.();
      }, this.quietMs);
      this.timer.unref();
    }
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
