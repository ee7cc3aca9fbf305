// The contract suite's factory for ClientStorage: one server serves many storages ('1'..'N', as ZEO's own
// testZEO.py shares a server between tests); each test directory gets a fresh storage name, and reopening the
// directory reconnects to the same name.
import { join } from 'node:path';
import { ClientStorage, type ClientStorageOptions } from '../../src/client/index.js';
import type { StorageFactory } from '../storage/contract/index.js';

export interface ZeoFactoryOptions {
  /** the server's address once it runs */
  address(): ClientStorageOptions['server'];
  /** how many storages the server serves */
  storages: number;
  /** more client options (cache...) */
  client?: Partial<ClientStorageOptions>;
}

export function storageNames(n: number): string[] {
  return Array.from({ length: n }, (_, i) => String(i + 1));
}

export function zeoFactory(options: ZeoFactoryOptions): StorageFactory {
  const names = new Map<string, string>();
  let used = 0;
  return {
    async open({ dir, readOnly, resolver }) {
      let name = names.get(dir);
      if (name === undefined) {
        if (used >= options.storages)
          throw new Error(`the test server serves only ${options.storages} storages`);
        name = String(++used);
        names.set(dir, name);
      }
      return ClientStorage.open({
        server: options.address(),
        storage: name,
        readOnly: readOnly ?? false,
        resolver: resolver ?? null,
        // a blob cache of its own per test directory
        blobDir: join(dir, 'blob-cache'),
        waitTimeout: 10_000,
        ...options.client,
      });
    },
    persistent: true,
    supportsUndo: true,
    supportsPack: true,
    // ZEO's pack(t, wait) has no gc flag: the server always collects garbage
    supportsPackWithoutGc: false,
    supportsBlobs: true,
    supportsIterator: true,
    supportsRestore: true,
    supportsDeleteObject: true,
    // undoa is a one-way call: the server undoes at vote, with its own conflict resolution
    undoAtVote: true,
    // (zeo serve resolves none of the test's PCounter conflicts; runzeo with client-conflict-resolution never
    // resolves on its side: ZEO's StorageServer gives its storage never_resolve_conflict)
    resolverAppliesToUndo: false,
    // iterator_next carries the extension as a dict
    extensionBytesFromIterator: false,
    readOnlyMayPack: true,
    timeout: 30_000,
  };
}
