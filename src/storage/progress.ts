// Progress of long storage work (a pack) for whoever listens: a phase's done/total passed on at most every
// `intervalMs`, and once at its end, so a listener that draws or sends it is never flooded; without a listener
// there is no reporter, and the work pays one null check per step.

import type { PackProgressListener } from './interfaces.js';

/** Whether enough time has passed since the last `due()` that said yes. */
export class Throttle {
  #last = -Infinity;

  constructor(readonly intervalMs: number) {}

  due(now: number = performance.now()): boolean {
    if (now - this.#last < this.intervalMs) return false;
    this.#last = now;
    return true;
  }
}

/** One phase's progress, throttled (ProgressReporter.for makes one only when someone listens). */
export class ProgressReporter {
  readonly #throttle: Throttle;

  private constructor(
    private listener: PackProgressListener | null,
    readonly phase: string,
    private total: number,
    intervalMs: number,
  ) {
    this.#throttle = new Throttle(intervalMs);
  }

  /** A reporter for `phase` of `total` units, or null when nobody listens. */
  static for(
    listener: PackProgressListener | undefined,
    phase: string,
    total: number,
    intervalMs = 100,
  ): ProgressReporter | null {
    return listener ? new ProgressReporter(listener, phase, total, intervalMs) : null;
  }

  /** `done` units so far (and the total, when it grew); passed on when it is time to. */
  update(done: number, total?: number): void {
    if (total !== undefined && total > this.total) this.total = total;
    if (!this.#throttle.due()) return;
    this.tell(Math.min(done, this.total));
  }

  /** The phase is done: always passed on, as done === total (the final total when given). */
  end(total?: number): void {
    if (total !== undefined) this.total = total;
    this.tell(this.total);
  }

  private tell(done: number): void {
    try {
      this.listener?.(done, this.total, this.phase);
    } catch {
      // a listener that fails is told no more: its progress is not worth failing the work for
      this.listener = null;
    }
  }
}
