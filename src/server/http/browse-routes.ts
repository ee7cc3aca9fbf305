// The object browser's part of the HTTP listener: its page (/browse) and its JSON API under /api/browse/, over
// the served storages through the Storage contract. Every answer is bounded (pages, limits) and nothing here
// writes: there is no route that stores, packs or undoes.
import { readFile } from 'node:fs/promises';
import { PickleError } from '../../pickle/index.js';
import {
  BrowseBusyError,
  BrowseInputError,
  containerPage,
  inspectObject,
  objectHistory,
  pageLimit,
  parseId,
  RecordDecoder,
  RecordTooLargeError,
  transactionView,
  undoLogPage,
} from '../../storage/browse/index.js';
import { POSKeyError } from '../../storage/errors.js';
import type { Storage } from '../../storage/interfaces.js';
import { HttpError, sendJson, sendText, WEB_STATIC_DIR, type HttpContext, type HttpRoute } from './routes.js';
import type { StorageInfo } from '../../storage/browse/types.js';

const API = '/api/browse/';

/** The browser's errors as HTTP's: bad input 400, a missing object 404. */
async function answer<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (e) {
    if (e instanceof BrowseInputError) throw new HttpError(400, e.message);
    if (e instanceof PickleError) throw new HttpError(400, `the record does not decode: ${e.message}`);
    if (e instanceof POSKeyError) throw new HttpError(404, `no such object: ${e.message}`);
    if (e instanceof RecordTooLargeError) throw new HttpError(422, e.message);
    if (e instanceof BrowseBusyError) throw new HttpError(503, e.message);
    throw e;
  }
}

function intParam(url: URL, name: string, dflt: number, max: number): number {
  const text = url.searchParams.get(name);
  if (text === null || text === '') return dflt;
  if (!/^\d{1,10}$/.test(text) || Number(text) > max) {
    throw new HttpError(400, `bad ${name} ${JSON.stringify(text.slice(0, 20))}: expected 0 to ${max}`);
  }
  return Number(text);
}

/**
 * The routes, and the decoder their big records decode in (off the event loop, so that ZEO clients never wait
 * for a page); `close` (the listener's) terminates its worker.
 */
export function browseRoutes(ctx: HttpContext, decoder = new RecordDecoder()): HttpRoute[] {
  const storageNamed = (name: string): Storage => {
    const served = ctx.server.storages.get(name);
    if (!served) throw new HttpError(404, `no storage named ${JSON.stringify(name)}`);
    return served.storage;
  };
  const tidParam = (url: URL): Uint8Array | null => {
    const tid = url.searchParams.get('tid');
    return tid ? parseId(tid, 'tid') : null;
  };

  async function api(url: URL): Promise<unknown> {
    let parts: string[];
    try {
      parts = url.pathname.slice(API.length).split('/').map(decodeURIComponent);
    } catch {
      throw new HttpError(400, `bad escape in ${url.pathname.slice(0, 200)}`);
    }
    if (parts.length === 1 && parts[0] === 'storages') {
      return {
        storages: [...ctx.server.storages].map(([name, s]): StorageInfo => ({
          name,
          lastTransaction: Buffer.from(s.storage.lastTransaction()).toString('hex'),
          objects: s.storage.len(),
          size: s.storage.getSize(),
          undo: s.storage.capabilities.undo,
          iteration: s.storage.capabilities.iteration,
        })),
      };
    }
    const [name, what, id, sub, ...rest] = parts;
    if (name === undefined || what === undefined) throw new HttpError(404, `no such page: ${url.pathname}`);
    const storage = storageNamed(name);
    if (what === 'object' && id !== undefined && rest.length === 0) {
      const oid = parseId(id, 'oid');
      if (sub === undefined) return inspectObject(storage, oid, tidParam(url), decoder);
      if (sub === 'items') {
        return containerPage(storage, oid, {
          cursor: url.searchParams.get('cursor'),
          limit: pageLimit(url.searchParams.get('limit')),
          at: tidParam(url),
          decoder,
        });
      }
      if (sub === 'history') {
        return {
          oid: id,
          history: await objectHistory(storage, oid, pageLimit(url.searchParams.get('limit'))),
        };
      }
    }
    if (what === 'transaction' && id !== undefined && sub === undefined) {
      const tid = parseId(id, 'tid');
      const t = await transactionView(
        storage,
        tid,
        intParam(url, 'offset', 0, 1e9),
        pageLimit(url.searchParams.get('limit')),
      );
      if (!t) throw new HttpError(404, `no transaction ${id} in storage ${name}`);
      return t;
    }
    if (what === 'undo-log' && id === undefined) {
      const first = intParam(url, 'first', 0, 1e9);
      const last = intParam(url, 'last', first + 20, 1e9 + 1000);
      return undoLogPage(storage, first, last);
    }
    throw new HttpError(404, `no such page: ${url.pathname}`);
  }

  return [
    {
      path: '/browse',
      async handle(_req, res) {
        const html = await readFile(new URL('browse.html', WEB_STATIC_DIR), 'utf8');
        sendText(res, 200, 'text/html; charset=utf-8', html);
      },
    },
    {
      path: API,
      prefix: true,
      async handle(_req, res, url) {
        sendJson(res, 200, await answer(() => api(url)));
      },
      close: () => decoder.close(),
    },
  ];
}
