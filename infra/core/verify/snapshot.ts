import { randomBytes } from "node:crypto";
import type { Client } from "pg";
import { withClient } from "../db/client";
import { recordThrowaway } from "../db/copy";
import { parseDatabaseUrl, quoteIdent, withDatabase } from "../db/url";
import { isPgstackError, messageOf } from "../errors";
import type { Logger } from "../logger";
import { derivedName } from "../snapshot/restore";
import { describeFiles, filesFingerprint, sameFiles } from "../snapshot/fingerprint";
import { checkSeal, schemaDigestOn, type SealCheck } from "../snapshot/seal";
import { findSnapshot, listAllSnapshots, sealKeyFileOf, type StoreOptions } from "../snapshot/store";
import { describeStateMismatch, differingTables, tableStatesOn, type TableStates } from "../snapshot/tables";
import { withSnapshotSession, type SnapshotInfo } from "../snapshot/template";
import type { CheckResult } from "./check";

/**
 * `pgstack snapshot verify <id>`: the snapshot still holds what it held when
 * it was taken. Its record's seal first (seal.ts: digests rewritten since are
 * refused); then a template snapshot is read in place (closed to connections,
 * opened for this session only, as when it was taken), a dump is restored
 * into a throwaway database (its file checked against its SHA-256 first); the
 * content digest of every table and the schema's digest must equal the
 * recorded ones. Nothing of the database or the snapshot is changed.
 */
export async function verifySnapshot(url: string, id: string, options: StoreOptions & { log: Logger }): Promise<CheckResult> {
  try {
    const { engine, snapshot } = await findSnapshot(url, id, options);
    const details: Record<string, unknown> = { snapshotId: snapshot.snapshotId, engine: engine.kind, lastMigration: snapshot.lastMigration, createdAt: snapshot.createdAt };
    const seal = await checkSeal(snapshot, sealKeyFileOf(options));
    details.seal = seal.status;
    if (engine.kind === "template" && snapshot.files) return verifyFiles(url, snapshot, seal, details);
    const read = async (session: Client) => ({ states: await tableStatesOn(session), schema: await schemaDigestOn(session) });
    const admin = withDatabase(url, "postgres");
    let now: { states: TableStates; schema: string };
    if (engine.kind === "template") {
      now = await withClient(admin, (c) => withSnapshotSession(c, url, snapshot.snapshotId, read), { applicationName: "pgstack snapshot verify" });
    } else {
      const target = derivedName(parseDatabaseUrl(url).database, `_verify_${randomBytes(4).toString("hex")}`);
      try {
        await engine.materialize(url, snapshot, target, options.log);
        await withClient(admin, (c) => recordThrowaway(c, target, "snapshot verify"), { applicationName: "pgstack snapshot verify" });
        now = await withClient(withDatabase(url, target), read, { applicationName: "pgstack snapshot verify" });
      } finally {
        await withClient(admin, (c) => c.query(`DROP DATABASE IF EXISTS ${quoteIdent(target)} WITH (FORCE)`), { applicationName: "pgstack snapshot verify" }).catch((err) =>
          options.log.warn(`could not drop the throwaway database ${target}: ${messageOf(err)}`),
        );
      }
    }
    details.tables = Object.keys(now.states).length;
    const what = engine.kind === "template" ? "read in place" : "restored into a throwaway database";
    if (snapshot.schema !== undefined && now.schema !== snapshot.schema) {
      return { name: "snapshot", status: "fail", sentence: `Snapshot '${snapshot.snapshotId}' (${what}) no longer matches the schema digest recorded when it was taken: it was changed since, so it would not restore.`, details: { ...details, reason: "schema-changed" } };
    }
    if (snapshot.states === undefined) {
      return { name: "snapshot", status: "warn", sentence: `Snapshot '${snapshot.snapshotId}' was taken by an older pgstack that recorded no content digest: it ${engine.kind === "dump" ? "restores" : "is readable"}, but a change made to it since cannot be detected.`, details };
    }
    if (differingTables(now.states, snapshot.states).length > 0) {
      return {
        name: "snapshot",
        status: "fail",
        sentence: `Snapshot '${snapshot.snapshotId}' (${what}) no longer matches the content digests recorded when it was taken (${describeStateMismatch(now.states, snapshot.states)}): it was changed since, so it would not restore.`,
        details: { ...details, reason: "changed-since-taken" },
      };
    }
    if (seal.status !== "sealed") {
      const why = seal.status === "unsealed" ? "it was taken by an older pgstack that sealed none" : `the key that seals them (${seal.keyFile}) is ${seal.other ? "another one" : "not on this machine"}`;
      return { name: "snapshot", status: "warn", sentence: `Snapshot '${snapshot.snapshotId}' matches the digests in its record (${details.tables} tables and the schema), but they could not be verified against the seal: ${why}.`, details };
    }
    return { name: "snapshot", status: "pass", sentence: `Snapshot '${snapshot.snapshotId}' (${what}) verified: ${details.tables} tables and the schema match the sealed digests recorded when it was taken.`, details };
  } catch (err) {
    return { name: "snapshot", status: "fail", sentence: isPgstackError(err) ? err.message : `Verifying snapshot '${id}' failed: ${messageOf(err).split("\n")[0]}.`, details: { snapshotId: id, ...(isPgstackError(err) ? { code: err.code, ...err.details } : {}) } };
  }
}

/**
 * A clone snapshot (fingerprint.ts): its files against the sealed fingerprint.
 * Nothing is read from it, and no session enters it (one would change its files).
 */
async function verifyFiles(url: string, snapshot: SnapshotInfo, seal: SealCheck, details: Record<string, unknown>): Promise<CheckResult> {
  const id = snapshot.snapshotId;
  const now = await withClient(withDatabase(url, "postgres"), (c) => filesFingerprint(c, id), { applicationName: "pgstack snapshot verify" });
  details.files = snapshot.files!.files;
  if (!now.fingerprint) {
    return { name: "snapshot", status: "warn", sentence: `Snapshot '${id}' (clone) could not be checked against the fingerprint of its files: ${now.reason}.`, details: { ...details, reason: "files-unreadable" } };
  }
  if (!sameFiles(now.fingerprint, snapshot.files!)) {
    return {
      name: "snapshot",
      status: "fail",
      sentence: `Snapshot '${id}' (clone) no longer matches the fingerprint of its files recorded when it was taken (${describeFiles(now.fingerprint, snapshot.files!)}): a change to its content since cannot be ruled out, so it would not restore.`,
      details: { ...details, reason: "changed-since-taken" },
    };
  }
  const what = `its ${now.fingerprint.files} files (${(now.fingerprint.bytes / 2 ** 30).toFixed(2)} GiB) are unchanged since it was taken`;
  if (seal.status !== "sealed") {
    const why = seal.status === "unsealed" ? "it was taken by an older pgstack that sealed none" : `the key that seals it (${seal.keyFile}) is ${seal.other ? "another one" : "not on this machine"}`;
    return { name: "snapshot", status: "warn", sentence: `Snapshot '${id}' (clone): ${what} as its record says, but the record could not be verified against the seal: ${why}.`, details };
  }
  return { name: "snapshot", status: "pass", sentence: `Snapshot '${id}' (clone) verified: ${what} (sealed fingerprint; a clone's rows are not read).`, details };
}

/** The newest snapshot of the database (by the time it was taken), or undefined. */
export async function latestSnapshot(url: string, options: StoreOptions = {}): Promise<SnapshotInfo | undefined> {
  return (await listAllSnapshots(url, {}, options)).pop();
}
