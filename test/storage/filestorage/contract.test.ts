// FileStorage against the whole storage contract suite (test/storage/contract): a Data.fs in each test's
// directory, with a blob directory next to it.
import { join } from 'node:path';
import { FileStorage } from '../../../src/storage/filestorage/index.js';
import { storageContractTests, type StorageFactory } from '../contract/index.js';

const fileFactory: StorageFactory = {
  async open({ dir, readOnly, resolver }) {
    return FileStorage.open(join(dir, 'Data.fs'), {
      readOnly: readOnly ?? false,
      conflictResolver: resolver ?? null,
      blobDir: join(dir, 'blobs'),
    });
  },
  persistent: true,
  supportsUndo: true,
  supportsPack: true,
  supportsPackWithoutGc: true,
  supportsBlobs: true,
  supportsIterator: true,
  supportsRestore: true,
  supportsDeleteObject: true,
  indexFile: (dir) => join(dir, 'Data.fs.index'),
};

storageContractTests('FileStorage', fileFactory);
