// The part of yauzl 3 (no bundled types) that core/pgtools-cache.ts uses.
declare module "yauzl" {
  import type { EventEmitter } from "node:events";
  import type { Readable } from "node:stream";
  export interface Entry {
    fileName: string;
    externalFileAttributes: number;
  }
  export interface ZipFile extends EventEmitter {
    readEntry(): void;
    openReadStream(entry: Entry, callback: (err: Error | null, stream?: Readable) => void): void;
    close(): void;
  }
  export function open(path: string, options: { lazyEntries: boolean }, callback: (err: Error | null, zipfile?: ZipFile) => void): void;
  const yauzl: { open: typeof open };
  export default yauzl;
}
