// ZConfig's errors: a configuration refused, with the file and line it came from, and the ValueError a
// datatype raises (its message is Python's, wrapped with the key and position by the reader).

/** A configuration that cannot be read; the message names file and line as "FILE, line N: reason". */
export class ConfigError extends Error {
  readonly file: string | null;
  readonly line: number | null;
  /** the message without the position */
  readonly reason: string;

  constructor(reason: string, file: string | null = null, line: number | null = null) {
    super(file && line ? `${file}, line ${line}: ${reason}` : file ? `${file}: ${reason}` : reason);
    this.name = 'ConfigError';
    this.file = file;
    this.line = line;
    this.reason = reason;
  }
}

/** A ValueError from a datatype: the message is the one ZConfig's (Python's) conversion gives. */
export class DatatypeError extends Error {}

/** Where a value or section came from. */
export interface Position {
  file: string | null;
  line: number | null;
  /** for -X overrides: the specifier, which stands in for file and line */
  override?: string;
}

export function fail(reason: string, pos: Position | null): never {
  if (pos?.override) throw new ConfigError(`-X ${pos.override}: ${reason}`);
  throw new ConfigError(reason, pos?.file ?? null, pos?.line ?? null);
}

/** A datatype's refusal of a key's value, in ZConfig's wording, at the value's position. */
export function convFail(key: string, e: unknown, pos: Position): never {
  if (e instanceof DatatypeError) fail(`invalid value for '${key}': ${e.message}`, pos);
  throw e;
}
