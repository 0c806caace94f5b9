import { Command } from "commander";
import { modeCell, planFromApplied, planMigrations, planError } from "../../core/migrations/plan";
import { rehearse, type Rehearsal } from "../../core/rehearsal/rehearse";
import { planRevert } from "../../core/revert/revert";
import type { Logger } from "../../core/logger";
import type { Settings } from "../../core/settings";
import { lintError, lintMigrations, type LintReport } from "../../core/lint";
import { findingLine } from "./lint";
import { PgstackError, messageOf } from "../../core/errors";
import type { Context } from "../context";
import { settingsFrom, withDatabaseOptions, type DatabaseFlags } from "../options";
import { table } from "../output";
import { readStack, type StackState } from "../../config/stack";
import { resolveSettings } from "../../core/settings";
import { discoverMigrations, findMigration } from "../../core/migrations/discover";
import { loadSqlParser } from "../../core/migrations/sql";
import { postgresSnapshotName, rdsSnapshotId } from "../../core/snapshot/naming";
import type { Plan } from "../../core/migrations/plan";
import { classifyMigration, type MigrationCompatibility } from "../../core/compat";
import { DEFAULT_DRIFT_POLICY, driftOf, driftRefusal, type CheckResult } from "../../core/verify";
import { driftLines, driftObjects, renderDriftMarkdown } from "../render/drift";
import { verifyCacheDir } from "./verify";
import { contractSentence, renderLintMarkdown, renderPlanMarkdown, type Revertibility } from "../render/plan-markdown";

type PlanFlags = DatabaseFlags & { to?: string; markdown?: boolean; rehearse?: boolean; strict?: boolean; stack?: string; drift?: boolean; acceptDrift?: boolean };

export function planCommand(ctx: Context): Command {
  return withDatabaseOptions(new Command("plan"))
    .description("what `apply --all` would do, without changing anything")
    .option("--to <name>", "stop after this migration")
    .option("--markdown", "print the plan as a pull-request comment")
    .option("--rehearse", "apply the pending migrations to a throwaway copy of the database and report errors, durations and locks")
    .option("--strict", "fail on a blocking lint finding in a pending migration (stacks with `lint: strict`)")
    .option("--stack <name>", "plan for a Pulumi stack: pending migrations from its state, its database for --rehearse, its lint setting")
    .option("--no-drift", "do not compare the database's schema with what its applied migrations make")
    .option("--accept-drift", "with --strict: plan anyway when the database differs from its migrations")
    .action(async (flags: PlanFlags) => {
      let stackState: StackState | undefined;
      if (flags.stack) {
        stackState = await readStack(flags.stack);
        if (stackState.databaseUrl && !flags.url) flags.url = stackState.databaseUrl;
        if (stackState.config.lint === "strict") flags.strict = true;
      }
      const settings = stackState
        ? resolveSettings({ ...flags, url: flags.url }, process.cwd(), { requireUrl: Boolean(flags.rehearse) })
        : settingsFrom(flags, ctx.env);
      const plan = stackState ? await planFromStack(settings.migrationsDir, stackState, flags.to) : await planMigrations(settings, flags.to);
      const snapshot = stackState && plan.pending.length > 0 ? predictedSnapshot(stackState) : undefined;
      // Only what would run is linted: applied history cannot change any more.
      const pending = plan.pending.map((p) => plan.status.find((s) => s.name === p.name)!.migration!);
      const lint = await lintMigrations(pending);
      // Whether each would break the application version now running (README "Expand and contract").
      const compatibility = await Promise.all(pending.map((m) => classifyMigration(m.sql)));
      // Drift found on the live database before anything runs (README, "Verify"), when there is one to read.
      let drift: CheckResult | undefined;
      const liveUrl = stackState ? flags.url : (flags.url ?? ctx.env.DATABASE_URL);
      if (flags.drift !== false && liveUrl) {
        drift = await driftOf(settings.databaseUrl, {
          migrationsDir: settings.migrationsDir,
          policy: stackState?.config.drift ?? DEFAULT_DRIFT_POLICY,
          cacheDir: verifyCacheDir(settings.migrationsDir),
          log: ctx.logger(flags),
        });
      }
      let rehearsal: Rehearsal | undefined;
      let revert: Revertibility | undefined;
      if (flags.rehearse && plan.pending.length > 0 && plan.blockers.length === 0) {
        const log = ctx.logger(flags);
        rehearsal = await rehearse(settings, log, {
          // With the deploy applied on the copy: could `npm run rollback -- --revert` undo it without loss?
          afterApply: async (copy) => {
            revert = await revertibility(copy, plan, log);
          },
        });
      }
      if (flags.json) {
        const withCompat = plan.pending.map((p, i) => ({ ...p, ...compatibility[i] }));
        ctx.output.out(
          JSON.stringify({
            pending: withCompat,
            blockers: plan.blockers,
            lint,
            ...(drift ? { drift: { status: drift.status, sentence: drift.sentence, objects: driftObjects(drift) } } : {}),
            ...(rehearsal ? { rehearsal } : {}),
            ...(revert ? { revert } : {}),
          }),
        );
      } else if (flags.markdown) {
        ctx.output.out(renderPlanMarkdown({ stack: flags.stack, plan, compatibility, rehearsal, revert, snapshot, sections: [renderLintMarkdown(lint, Boolean(flags.strict)), ...(drift && driftObjects(drift).length > 0 ? [renderDriftMarkdown(drift)] : [])] }));
      } else {
        printPlan(ctx, plan, rehearsal, lint, compatibility);
        if (revert) ctx.output.out(describeRevertibility(revert));
        if (snapshot) ctx.output.out(`Snapshot before the first migration: ${snapshot}`);
        // Said when there is something to say: a database that is what its migrations make prints nothing more.
        if (drift && driftObjects(drift).length > 0) {
          ctx.output.out(`\nDrift: ${drift.sentence}`);
          for (const line of driftLines(drift, "  ")) ctx.output.out(line);
        }
      }
      const blocked = planError(plan);
      if (blocked) throw blocked;
      const lintFailed = flags.strict ? lintError(lint) : undefined;
      if (lintFailed) throw lintFailed;
      const refused = drift && flags.strict && !flags.acceptDrift ? driftRefusal(drift, "The plan") : undefined;
      if (refused) throw new PgstackError("E_VERIFY", refused, { objects: driftObjects(drift!).filter((o) => !o.allowed).map((o) => `${o.kind} ${o.name}`) });
      if (rehearsal && !rehearsal.ok) {
        const failed = rehearsal.migrations.find((m) => m.outcome === "failed");
        throw new PgstackError(
          "E_MIGRATION_FAILED",
          failed
            ? `The rehearsal failed: migration ${failed.name} fails at line ${failed.line}: ${failed.error}; the real database was not touched.`
            : "The rehearsal failed; the real database was not touched.",
        );
      }
    });
}

/**
 * Whether reverting each pending migration, once all are applied (on the
 * rehearsal copy), would lose data: reverting back to before it, minus what
 * reverting the later ones already loses, is what it alone cannot give back.
 */
async function revertibility(copy: Settings, plan: Awaited<ReturnType<typeof planMigrations>>, log: Logger): Promise<Revertibility> {
  const applied = plan.status.filter((s) => s.state === "applied").map((s) => s.name);
  const pending = plan.pending.map((p) => p.name);
  const out: Revertibility = [];
  let later = { losses: [] as string[], drops: [] as string[] };
  for (let i = pending.length - 1; i >= 0; i--) {
    const to = i > 0 ? pending[i - 1] : applied.length > 0 ? applied[applied.length - 1] : null;
    let back: { losses: string[]; drops: string[] };
    try {
      const r = await planRevert(copy, { to, log });
      back = { losses: r.losses, drops: r.drops.map((d) => `${d.kind} ${d.name}`) };
    } catch (err) {
      back = { losses: [`the reverse could not be computed: ${messageOf(err).split("\n")[0]}`], drops: [] };
    }
    const losses = back.losses.filter((l) => !later.losses.includes(l));
    out.unshift({ migration: pending[i], withoutLoss: losses.length === 0, losses, drops: back.drops.filter((d) => !later.drops.includes(d)) });
    later = back;
  }
  return out;
}

function describeRevertibility(r: Revertibility): string {
  return r
    .map((m) =>
      m.withoutLoss
        ? `${m.migration}: revertible without loss (\`npm run rollback -- --revert\` keeps every write${m.drops.length > 0 ? `; it would drop ${m.drops.join(", ")}` : ""}).`
        : `${m.migration}: NOT revertible without loss: ${m.losses.join("; ")}.`,
    )
    .join("\n");
}

function printPlan(
  ctx: Context,
  plan: Awaited<ReturnType<typeof planMigrations>>,
  rehearsal: Rehearsal | undefined,
  lint: LintReport,
  compatibility: MigrationCompatibility[],
) {
  if (plan.pending.length === 0 && plan.blockers.length === 0) {
    ctx.output.out("Nothing to apply: the database is up to date.");
    return;
  }
  if (plan.pending.length > 0) {
    ctx.output.out(`${plan.pending.length} migration(s) would be applied, in this order:`);
    ctx.output.out(
      table(
        ["MIGRATION", "STATEMENTS", "MODE", "COMPATIBILITY"],
        plan.pending.map((p, i) => [
          p.name + (p.retry ? " (retry of a failed attempt)" : ""),
          String(p.statements),
          modeCell(p),
          compatibility[i].compatibility + (compatibility[i].acknowledged ? " (acknowledged)" : "") + (compatibility[i].declaredExpand ? " (declared)" : ""),
        ]),
      ),
    );
    const notAtomic = plan.pending.filter((p) => !p.atomic);
    if (notAtomic.length > 0) {
      ctx.output.out(
        `Not atomic: ${notAtomic.map((p) => p.name).join(", ")} commit${notAtomic.length > 1 ? "" : "s"} statement by statement; a failure leaves the statements before it applied (recorded, and resumed by the next run).`,
      );
    }
  }
  const contract = plan.pending.map((p, i) => ({ name: p.name, ...compatibility[i] })).filter((c) => c.compatibility === "contract");
  if (contract.length > 0) {
    ctx.output.out(`\nContract: ${contractSentence(contract.length)}`);
    for (const c of contract) {
      if (c.acknowledged) ctx.output.out(`${c.name}: acknowledged: ${c.acknowledged}`);
      for (const r of c.reasons) ctx.output.out(`${c.name}:${r.line}: ${r.rule}: ${r.reason}`);
    }
  }
  // Declared expand by its author (`-- pgstack:expand <why>`): runs before the rollout; what pgstack found is shown.
  const declared = plan.pending.map((p, i) => ({ name: p.name, ...compatibility[i] })).filter((c) => c.declaredExpand);
  if (declared.length > 0) {
    ctx.output.out(`\nDeclared expand (\`-- pgstack:expand\`): runs before the rollout, on its author's word`);
    for (const c of declared) {
      ctx.output.out(`${c.name}: declared expand: ${c.declaredExpand}`);
      for (const r of c.reasons) ctx.output.out(`${c.name}:${r.line}: ${r.rule}: ${r.reason} (overruled by the declaration)`);
    }
  }
  for (const note of plan.notes ?? []) ctx.output.out(`note: ${note}`);
  for (const b of plan.blockers) ctx.output.out(`blocked: ${b.message}`);
  if (lint.findings.length > 0) {
    ctx.output.out(`\nLint: ${lint.blocking} blocking, ${lint.warnings} warning(s), ${lint.suppressed} accepted`);
    for (const f of lint.findings) ctx.output.out(findingLine(f));
  }
  if (rehearsal) {
    ctx.output.out(`\nRehearsal on a ${rehearsal.copy === "template" ? "copy with data" : "schema-only copy"}: ${rehearsal.ok ? "passed" : "FAILED"}`);
    ctx.output.out(
      table(
        ["MIGRATION", "RESULT", "DURATION", "LOCKS ON EXISTING TABLES"],
        rehearsal.migrations.map((m) => [
          m.name,
          m.outcome === "failed" ? `failed at line ${m.line}: ${m.error}` : m.outcome,
          m.durationMs === undefined ? "" : `${Math.round(m.durationMs)} ms`,
          m.locks.map((l) => `${l.table} ${l.mode}`).join(", ") || "-",
        ]),
      ),
    );
  }
}

/** A stack's plan from its outputs and config, with no database connection (see planFromApplied). */
export async function planFromStack(dir: string, state: Pick<StackState, "appliedMigrations" | "config">, to?: string): Promise<Plan> {
  const notes: string[] = [];
  const migrations = await discoverMigrations(dir, (note) => notes.push(note));
  await loadSqlParser();
  const last = to ? findMigration(migrations, to, "--to").name : state.config.pinnedMigration;
  return { ...planFromApplied(migrations, state.appliedMigrations ?? [], last), notes };
}

/** The id the stack's PreUpdateSnapshot would give: stack, last applied migration, time. */
export function predictedSnapshot(state: Pick<StackState, "stack" | "appliedMigrations" | "config">, at = new Date()): string {
  const lastMigration = state.appliedMigrations?.[state.appliedMigrations.length - 1];
  return state.config.engine === "rds" ? rdsSnapshotId({ stack: state.stack, lastMigration, at }) : postgresSnapshotName({ stack: state.stack, lastMigration, at });
}
