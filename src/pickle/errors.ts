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
