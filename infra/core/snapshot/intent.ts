import type { Client } from "pg";
import { quoteIdent, quoteLiteral } from "../db/url";
import { PgstackError } from "../errors";
import { readLedger } from "../ledger/ledger";
import { commentInsideMarker, operationOn, ownComment } from "./fence";

/**
 * A rollback's intent, recorded in the rolled-back database itself at its
 * point of no return: by the restore in the transaction that swaps the copy
 * in (on the copy), by the revert in the transaction that commits the reverse.
 * So it exists exactly when the database was rolled back, survives a SIGKILL
 * right after, and is read by whoever comes next without the stack: a retry
 * of `npm run rollback` finishes the rollback (pins the chain at `pin`,
 * undoes nothing more) instead of undoing one more update, and the Pulumi
 * program refuses an update that would apply the removed migrations again.
 * `npm run rollback` clears it once the pin is set.
 *
 * Kept in the database's comment, as fence.ts keeps its markers and for the
 * same reason (no superuser needed; a snapshot's label lives there too): the
 * database's own comment is kept inside and put back when the intent is
 * cleared. Never in `_prisma_migrations`, whose rows stay as Prisma writes them.
 */
export interface RollbackIntent {
  op: "restore" | "revert";
  /** The last migration the rolled-back database holds: where the chain is to be pinned. */
  pin: string;
  /** restore: the snapshot restored. */
  snapshot?: string;
  /** The migrations the rollback removed, in name order. */
  removed: string[];
  /** When the point of no return was passed (ISO). */
  at: string;
}

const KEY = "pgstack-rollback";

interface Stored {
  [KEY]: RollbackIntent;
  /** The database's own comment. */
  comment: string | null;
}

function parse(text: string | null): Stored | undefined {
  if (!text) return undefined;
  try {
    const data = JSON.parse(text) as Stored;
    if (!data || typeof data !== "object" || !data[KEY] || typeof data[KEY] !== "object") return undefined;
    const i = data[KEY];
    const valid = typeof i.pin === "string" && Array.isArray(i.removed) && (i.op === "restore" || i.op === "revert");
    return valid ? data : undefined;
  } catch {
    return undefined;
  }
}

async function commentOf(client: Client, db: string): Promise<string | null> {
  const { rows } = await client.query<{ c: string | null }>("SELECT shobj_description(oid, 'pg_database') AS c FROM pg_database WHERE datname = $1", [db]);
  return rows[0]?.c ?? null;
}

async function setComment(client: Client, db: string, comment: string | null): Promise<void> {
  await client.query(`COMMENT ON DATABASE ${quoteIdent(db)} IS ${comment === null ? "NULL" : quoteLiteral(comment)}`);
}

/** The unfinished rollback recorded on `db` (also while a snapshot or restore's marker wraps it), if any. */
export async function rollbackIntentOn(client: Client, db: string): Promise<RollbackIntent | undefined> {
  return parse(await ownComment(client, db))?.[KEY];
}

/**
 * Why the ledger contradicts `intent`, as a phrase, or undefined when it
 * agrees: the pin is applied and nothing after it is.
 * `applied`: the migrations the ledger holds finished and not rolled back. Pure.
 */
export function intentContradiction(intent: RollbackIntent, applied: Iterable<string>): string | undefined {
  const names = [...applied].sort();
  if (!names.includes(intent.pin)) return `${intent.pin} is not applied`;
  const after = names.filter((n) => n > intent.pin);
  if (after.length > 0) return `${after.join(", ")}, after ${intent.pin}, ${after.length === 1 ? "is" : "are"} applied`;
  return undefined;
}

/** The rollback intent on `db` checked against its ledger: `stale` says why the ledger contradicts it. */
export interface CheckedIntent {
  intent: RollbackIntent;
  stale?: string;
}

/** The intent on `db` (rollbackIntentOn) checked against the ledger of the database `client` is connected to, which must be `db`. */
export async function checkedRollbackIntentOn(client: Client, db: string): Promise<CheckedIntent | undefined> {
  const intent = await rollbackIntentOn(client, db);
  if (!intent) return undefined;
  const applied = (await readLedger(client)).filter((r) => r.finishedAt !== null && r.rolledBackAt === null).map((r) => r.migrationName);
  const stale = intentContradiction(intent, applied);
  return stale ? { intent, stale } : { intent };
}

/** One sentence: the intent on the database of `stack` is stale and what happens to it (`fate`: "ignored", "cleared"). Pure. */
export function staleIntentMessage(stack: string, checked: CheckedIntent, fate: string): string {
  return `The database of stack '${stack}' records a rollback to ${checked.intent.pin} (${describeIntent(checked.intent)}) that its ledger contradicts (${checked.stale}): that record is stale and ${fate}.`;
}

/**
 * A database's comment with neither an operation marker nor a rollback
 * intent around it, however nested: what a copy of it may carry. Pure.
 */
export function plainComment(text: string | null): string | null {
  for (let depth = 0; depth < 16; depth++) {
    const inside = commentInsideMarker(text);
    if (inside !== undefined) {
      text = inside;
      continue;
    }
    const stored = parse(text);
    if (!stored) return text;
    text = stored.comment ?? null;
  }
  return null;
}

/**
 * Records `intent` on `db`, replacing one already there. Call inside the
 * transaction that passes the point of no return, so both commit or neither.
 */
export async function recordRollbackIntent(client: Client, db: string, intent: RollbackIntent): Promise<void> {
  if (await operationOn(client, db)) {
    throw new PgstackError("E_SNAPSHOT", `Database '${db}' is in the middle of a pgstack snapshot or restore: let it finish, or run any pgstack command once it has died to repair it, and run again; nothing was changed.`);
  }
  const current = await commentOf(client, db);
  const stored: Stored = { [KEY]: intent, comment: parse(current)?.comment ?? current };
  await setComment(client, db, JSON.stringify(stored));
}

/**
 * The rollback is finished (the stack is pinned), or its record is stale:
 * `db` gets its own comment back. A database with no intent is left as it is.
 */
export async function clearRollbackIntent(client: Client, db: string): Promise<void> {
  if (await operationOn(client, db)) return; // its marker puts the comment back; the next rollback clears what is inside
  const stored = parse(await commentOf(client, db));
  if (stored) await setComment(client, db, stored.comment ?? null);
}

/** "a restore of snapshot <id>, which removed a, b" / "a revert of a, b", for people. Pure. */
export function describeIntent(intent: RollbackIntent): string {
  const removed = intent.removed.length > 0 ? intent.removed.join(", ") : "no migration";
  return intent.op === "restore" ? `a restore of snapshot ${intent.snapshot ?? "(unknown)"}, which removed ${removed}` : `a revert of ${removed}`;
}

/**
 * The sentence an update (or a preview) of `stack` refuses with while a
 * rollback to `intent.pin` is unfinished and the chain is not pinned there. Pure.
 */
export function unfinishedRollbackMessage(stack: string, intent: RollbackIntent): string {
  return (
    `The database of stack '${stack}' was rolled back to ${intent.pin} (${describeIntent(intent)}) but the stack's migration chain is not pinned there, ` +
    `so this update would apply ${intent.removed.length > 0 ? intent.removed.join(", ") : "the removed migrations"} again: ` +
    `finish that rollback with \`npm run rollback -- --stack ${stack} --yes\` (it pins the chain at ${intent.pin} and undoes nothing more); nothing was changed.`
  );
}
