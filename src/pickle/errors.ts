/** A pickle that cannot be read or a value that cannot be written; `offset` is the byte where reading failed (-1 when writing). */
export class PickleError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(offset >= 0 ? `${message} (at byte ${offset})` : message);
    this.name = 'PickleError';
  }
}

/**
 * A pickle refused while it was being read because its unfinished containers pile up past LoadOptions.maxStack
 * (deep nesting). `stackBottom` is what the stack held first (for a ZEO message: msgid, flag and name), so the
 * reader can still answer the call.
 */
export class PickleStackLimitError extends PickleError {
  constructor(
    message: string,
    offset: number,
    readonly stackBottom: readonly unknown[],
  ) {
    super(message, offset);
    this.name = 'PickleStackLimitError';
  }
}
