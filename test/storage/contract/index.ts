// The storage contract suite: every module, for one factory. A storage's test file calls this once.
import { basicStorageTests } from './basic-storage.js';
import { capabilitiesTests } from './capabilities.js';
import { conflictResolutionTests } from './conflict-resolution.js';
import { corruptionTests } from './corruption.js';
import type { StorageFactory } from './factory.js';
import { historyStorageTests } from './history-storage.js';
import { iteratorStorageTests } from './iterator-storage.js';
import { mtStorageTests } from './mt-storage.js';
import { mvccStorageTests } from './mvcc-storage.js';
import { packableStorageTests } from './packable-storage.js';
import { persistentStorageTests } from './persistent-storage.js';
import { readOnlyStorageTests } from './read-only-storage.js';
import { recoveryStorageTests } from './recovery-storage.js';
import { revisionStorageTests } from './revision-storage.js';
import { synchronizationTests } from './synchronization.js';
import { transactionalUndoStorageTests } from './transactional-undo-storage.js';

export type { OpenOptions, StorageFactory } from './factory.js';
export {
  basicStorageTests,
  capabilitiesTests,
  conflictResolutionTests,
  corruptionTests,
  historyStorageTests,
  iteratorStorageTests,
  mtStorageTests,
  mvccStorageTests,
  packableStorageTests,
  persistentStorageTests,
  readOnlyStorageTests,
  recoveryStorageTests,
  revisionStorageTests,
  synchronizationTests,
  transactionalUndoStorageTests,
};

export function storageContractTests(name: string, factory: StorageFactory): void {
  basicStorageTests(name, factory);
  capabilitiesTests(name, factory);
  revisionStorageTests(name, factory);
  historyStorageTests(name, factory);
  transactionalUndoStorageTests(name, factory);
  packableStorageTests(name, factory);
  iteratorStorageTests(name, factory);
  mvccStorageTests(name, factory);
  synchronizationTests(name, factory);
  readOnlyStorageTests(name, factory);
  recoveryStorageTests(name, factory);
  conflictResolutionTests(name, factory);
  mtStorageTests(name, factory);
  persistentStorageTests(name, factory);
  corruptionTests(name, factory);
}
