import { createHash } from "node:crypto";
import { checksumMatches, checksumOf, legacyChecksumOf } from "../../infra/core/migrations/checksum";

const lf = Buffer.from('-- CreateTable\nCREATE TABLE "a" ("id" TEXT NOT NULL);\n');
const crlf = Buffer.from(lf.toString().replace(/\n/g, "\r\n"));

describe("checksum (Prisma's rules)", () => {
  it("is the SHA-256 hex of the file's bytes, as sha256sum prints it", () => {
    expect(checksumOf(lf)).toBe(createHash("sha256").update(lf).digest("hex"));
    expect(checksumOf(lf)).toMatch(/^[0-9a-f]{64}$/);
  });

  it("matches the file as is", () => {
    expect(checksumMatches(checksumOf(lf), lf)).toBe(true);
  });

  it("treats a CRLF checkout of an LF-applied migration as the same migration", () => {
    expect(checksumMatches(checksumOf(lf), crlf)).toBe(true);
  });

  it("treats an LF checkout of a CRLF-applied migration as the same migration", () => {
    expect(checksumMatches(checksumOf(crlf), lf)).toBe(true);
  });

  it("accepts the legacy checksum without zero-padding of each byte", () => {
    const legacy = legacyChecksumOf(lf);
    expect(legacy.length).toBeLessThan(64); // some byte of this digest is < 0x10
    expect(checksumMatches(legacy, lf)).toBe(true);
    expect(checksumMatches(legacyChecksumOf(lf), crlf)).toBe(true);
  });

  it("does not match an edited file", () => {
    const edited = Buffer.from(lf.toString().replace("TEXT", "INTEGER"));
    expect(checksumMatches(checksumOf(lf), edited)).toBe(false);
    expect(checksumMatches(legacyChecksumOf(lf), edited)).toBe(false);
  });
});
