import { createHash } from "node:crypto";

/** Prisma's checksum: SHA-256 of the migration.sql bytes, lower-case hex. */
export function checksumOf(bytes: Buffer): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Prisma before 2.x formatted each byte without zero-padding ("a" for 0x0a). */
export function legacyChecksumOf(bytes: Buffer): string {
  const digest = createHash("sha256").update(bytes).digest();
  return [...digest].map((b) => b.toString(16)).join("");
}

/**
 * Whether a checksum stored in the ledger belongs to this file. As in Prisma, a
 * file whose line endings were converted by git on checkout (CRLF <-> LF) is the
 * same migration, not drift, and the legacy unpadded hex form still matches.
 */
export function checksumMatches(stored: string, bytes: Buffer): boolean {
  const lf = Buffer.from(bytes.toString("latin1").replace(/\r\n/g, "\n"), "latin1");
  const crlf = Buffer.from(lf.toString("latin1").replace(/\n/g, "\r\n"), "latin1");
  for (const variant of [bytes, lf, crlf]) {
    if (stored === checksumOf(variant) || stored === legacyChecksumOf(variant)) return true;
  }
  return false;
}
