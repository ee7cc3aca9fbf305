// The private PostgreSQL cluster the PostgreSQL storage's tests will use: it starts, takes connections over its
// socket only, keeps what is written, and is gone after stop().
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import pg from 'pg';
import { skipPostgres, startPostgres } from './postgres.js';

describe('test helper: a private PostgreSQL cluster', { skip: skipPostgres }, () => {
  it('starts in a temporary directory, serves over its socket, and is removed by stop()', async () => {
    const cluster = await startPostgres();
    try {
      const admin = new pg.Client(cluster.connection());
      await admin.connect();
      try {
        await admin.query('CREATE DATABASE zeo_test');
        const settings = await admin.query<{ listen: string; fsync: string }>(
          "SELECT current_setting('listen_addresses') AS listen, current_setting('fsync') AS fsync",
        );
        assert.deepEqual(settings.rows[0], { listen: '', fsync: 'off' });
      } finally {
        await admin.end();
      }
      const c = new pg.Client(cluster.connection('zeo_test'));
      await c.connect();
      try {
        await c.query('CREATE TABLE t (zoid BIGINT PRIMARY KEY, state BYTEA)');
        await c.query('INSERT INTO t VALUES ($1, $2)', ['1', Buffer.from([0x80, 0x03, 0x2e])]);
        const r = await c.query<{ zoid: string; state: Buffer }>('SELECT zoid, state FROM t');
        assert.deepEqual(r.rows, [{ zoid: '1', state: Buffer.from([0x80, 0x03, 0x2e]) }]);
      } finally {
        await c.end();
      }
    } finally {
      await cluster.stop();
    }
    assert.equal(existsSync(cluster.socketDir), false);
  });
});
