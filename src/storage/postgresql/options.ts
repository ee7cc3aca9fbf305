// The options of a PostgreSQL storage (the agreed interface; pg-config owns this file and its parser).
import type pg from 'pg';

export interface PostgreSQLOptions {
  /** libpq keyword=value string or postgresql:// URI */
  dsn: string;
  name?: string;
  readOnly?: boolean;
  /** default true */
  createSchema?: boolean;
  /** only true supported */
  keepHistory?: boolean;
  /** seconds, default 1 */
  pollInterval?: number;
  /** seconds, RelStorage's default 30 */
  commitLockTimeout?: number;
  blobChunkSize?: number;
  blobDir?: string | null;
  poolSize?: number;
  packGc?: boolean;
  connectTimeout?: number;
}

/** node-postgres options for a DSN of either form (libpq keyword=value, or a postgresql:// URI). */
export function pgClientConfig(dsn: string): pg.ClientConfig {
  if (/^postgres(ql)?:\/\//.test(dsn)) return { connectionString: dsn };
  const config: pg.ClientConfig = {};
  const re = /\s*([A-Za-z_]+)\s*=\s*('((?:[^'\\]|\\.)*)'|\S*)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(dsn)) !== null) {
    const value = m[3] !== undefined ? m[3].replace(/\\(.)/g, '$1') : m[2];
    switch (m[1]) {
      case 'host':
        config.host = value;
        break;
      case 'port':
        config.port = Number(value);
        break;
      case 'user':
        config.user = value;
        break;
      case 'password':
        config.password = value;
        break;
      case 'dbname':
        config.database = value;
        break;
      case 'connect_timeout':
        config.connectionTimeoutMillis = Number(value) * 1000;
        break;
      case 'application_name':
        config.application_name = value;
        break;
      default:
        break;
    }
  }
  return config;
}
