// Development and test seed data, through the generated Prisma Client over
// @prisma/adapter-pg.
//
//   DATABASE_URL=postgres://... tsx prisma/seed.ts      (also: `prisma db seed`)
//
// Idempotent: every write is an upsert keyed on a unique field (emails, slugs,
// tokens, key prefixes, fixed audit-event ids), all inside one transaction, so
// running it twice leaves the same rows with the same ids.
//
// Never on prod: if PGSTACK_STACK or PGSTACK_ENV is `prod`/`production`, or
// NODE_ENV is `production`, it refuses before connecting to anything.
//
// The module exports `seed()` and `refuseOnProd()` so tests can import it; the
// script part only runs when the file is executed directly.
import { createHash } from "node:crypto";

import { PrismaPg } from "@prisma/adapter-pg";

import {
  AuditActorType,
  InvitationStatus,
  MembershipRole,
  Plan,
  Prisma,
  PrismaClient,
} from "./generated/client/client";

export const PROD_REFUSAL = "Refusing to seed the prod database: the seed is for dev and test data only.";

const PROD_NAMES = new Set(["prod", "production"]);

/** A stack or environment name is prod if it, or its last `/` segment (`org/project/prod`), is prod/production. */
function isProdName(value: string | undefined): boolean {
  if (!value) return false;
  const name = value.trim().toLowerCase();
  const last = name.split("/").pop() ?? name;
  return PROD_NAMES.has(name) || PROD_NAMES.has(last);
}

/**
 * Returns the refusal sentence when `env` says this is production
 * (PGSTACK_STACK or PGSTACK_ENV is prod/production, or NODE_ENV=production),
 * otherwise null.
 */
export function refuseOnProd(env: NodeJS.ProcessEnv | Record<string, string | undefined>): string | null {
  if (isProdName(env.PGSTACK_STACK) || isProdName(env.PGSTACK_ENV)) return PROD_REFUSAL;
  if ((env.NODE_ENV ?? "").trim().toLowerCase() === "production") return PROD_REFUSAL;
  return null;
}

/** How many records of each model the seed upserts (the same on every run). */
export interface SeedSummary {
  users: number;
  accounts: number;
  sessions: number;
  verificationTokens: number;
  organizations: number;
  memberships: number;
  projects: number;
  invitations: number;
  apiKeys: number;
  auditEvents: number;
}

/** A client that can run the seed: a PrismaClient (or one extended by the caller). */
type SeedClient = Pick<PrismaClient, "$transaction">;
type Tx = Prisma.TransactionClient;

// Fixed timestamps, so a second run writes exactly the same values.
const T = (iso: string) => new Date(iso);
const FAR_FUTURE = T("2030-01-01T00:00:00.000Z");

const sha256 = (text: string) => createHash("sha256").update(text, "utf8").digest("hex");

const USERS = [
  { key: "alice", email: "alice@acme.example", name: "Alice Nguyen", verified: "2025-01-20T09:00:00.000Z" },
  { key: "bob", email: "bob@acme.example", name: "Bob Martins", verified: "2025-02-11T14:30:00.000Z" },
  { key: "carol", email: "carol@globex.example", name: "Carol Okafor", verified: "2025-03-02T08:15:00.000Z" },
  { key: "dave", email: "dave@globex.example", name: "Dave Lindqvist", verified: null },
] as const;
type UserKey = (typeof USERS)[number]["key"];

const ORGS = [
  { key: "acme", slug: "acme", name: "Acme Corp", plan: Plan.PRO, billingEmail: "billing@acme.example", seatLimit: 25 },
  { key: "globex", slug: "globex", name: "Globex", plan: Plan.FREE, billingEmail: null, seatLimit: 5 },
] as const;
type OrgKey = (typeof ORGS)[number]["key"];

const MEMBERSHIPS: ReadonlyArray<{ org: OrgKey; user: UserKey; role: MembershipRole }> = [
  { org: "acme", user: "alice", role: MembershipRole.OWNER },
  { org: "acme", user: "bob", role: MembershipRole.MEMBER },
  { org: "globex", user: "carol", role: MembershipRole.OWNER },
  { org: "globex", user: "dave", role: MembershipRole.VIEWER },
  { org: "globex", user: "alice", role: MembershipRole.ADMIN },
];

const PROJECTS: ReadonlyArray<{ key: string; org: OrgKey; slug: string; name: string; description: string | null }> = [
  { key: "acme-web", org: "acme", slug: "web-app", name: "Web App", description: "Customer-facing web application" },
  { key: "acme-billing", org: "acme", slug: "billing-service", name: "Billing Service", description: null },
  { key: "globex-pipeline", org: "globex", slug: "data-pipeline", name: "Data Pipeline", description: "Nightly ETL" },
];

const API_KEYS: ReadonlyArray<{ project: string; createdBy: UserKey; name: string; keyPrefix: string; scopes: string[] }> = [
  { project: "acme-web", createdBy: "alice", name: "CI deploys", keyPrefix: "pgs_dev_acme01", scopes: ["deploy", "read"] },
  { project: "globex-pipeline", createdBy: "carol", name: "ETL runner", keyPrefix: "pgs_dev_glbx01", scopes: ["read"] },
];

/**
 * Seeds the dev/test data set. Idempotent: upserts only, in one transaction.
 * `log` receives one summary line (never a connection string or a secret).
 */
export async function seed(prisma: SeedClient, log: (message: string) => void = console.log): Promise<SeedSummary> {
  const summary = await prisma.$transaction(async (tx: Tx) => seedInTransaction(tx), { timeout: 60_000 });
  log(
    "Seeded dev data: " +
      Object.entries(summary)
        .map(([model, n]) => `${n} ${model}`)
        .join(", ") +
      ".",
  );
  return summary;
}

async function seedInTransaction(tx: Tx): Promise<SeedSummary> {
  const users = {} as Record<UserKey, string>;
  for (const u of USERS) {
    const data = { name: u.name, emailVerifiedAt: u.verified ? T(u.verified) : null };
    const row = await tx.user.upsert({
      where: { email: u.email },
      create: { email: u.email, ...data },
      update: data,
    });
    users[u.key] = row.id;
  }

  const accounts = [
    { user: "alice" as const, provider: "github", providerAccountId: "1048576", scope: "read:user user:email" },
    { user: "carol" as const, provider: "google", providerAccountId: "109876543210987654321", scope: "openid email profile" },
  ];
  for (const a of accounts) {
    const data = { userId: users[a.user], type: "oauth", scope: a.scope, tokenType: "bearer" };
    await tx.account.upsert({
      where: { provider_providerAccountId: { provider: a.provider, providerAccountId: a.providerAccountId } },
      create: { provider: a.provider, providerAccountId: a.providerAccountId, ...data },
      update: data,
    });
  }

  const sessionData = {
    userId: users.alice,
    expiresAt: FAR_FUTURE,
    ipAddress: "203.0.113.10",
    userAgent: "Mozilla/5.0 (X11; Linux x86_64) pgstack-seed",
  };
  await tx.session.upsert({
    where: { sessionToken: "seed-session-alice" },
    create: { sessionToken: "seed-session-alice", ...sessionData },
    update: sessionData,
  });

  await tx.verificationToken.upsert({
    where: { token: "seed-verify-dave" },
    create: { identifier: "dave@globex.example", token: "seed-verify-dave", expiresAt: FAR_FUTURE },
    update: { identifier: "dave@globex.example", expiresAt: FAR_FUTURE },
  });

  const orgs = {} as Record<OrgKey, string>;
  for (const o of ORGS) {
    const data = { name: o.name, plan: o.plan, billingEmail: o.billingEmail, seatLimit: o.seatLimit };
    const row = await tx.organization.upsert({
      where: { slug: o.slug },
      create: { slug: o.slug, ...data },
      update: data,
    });
    orgs[o.key] = row.id;
  }

  for (const m of MEMBERSHIPS) {
    const key = { organizationId: orgs[m.org], userId: users[m.user] };
    await tx.membership.upsert({
      where: { organizationId_userId: key },
      create: { ...key, role: m.role },
      update: { role: m.role },
    });
  }

  const projects: Record<string, string> = {};
  for (const p of PROJECTS) {
    const key = { organizationId: orgs[p.org], slug: p.slug };
    const data = { name: p.name, description: p.description, archivedAt: null };
    const row = await tx.project.upsert({
      where: { organizationId_slug: key },
      create: { ...key, ...data },
      update: data,
    });
    projects[p.key] = row.id;
  }

  const invitationData = {
    organizationId: orgs.acme,
    email: "erin@acme.example",
    role: MembershipRole.MEMBER,
    status: InvitationStatus.PENDING,
    invitedById: users.alice,
    expiresAt: FAR_FUTURE,
    acceptedAt: null,
  };
  await tx.invitation.upsert({
    where: { token: "seed-invite-acme-erin" },
    create: { token: "seed-invite-acme-erin", ...invitationData },
    update: invitationData,
  });

  for (const k of API_KEYS) {
    // Only the hash is stored. The dev secret is derived from the prefix and is
    // never printed; real keys are random and shown once at creation.
    const hashedSecret = sha256(`${k.keyPrefix}.${sha256(`pgstack-dev-seed:${k.keyPrefix}`)}`);
    const data = {
      projectId: projects[k.project],
      createdById: users[k.createdBy],
      name: k.name,
      hashedSecret,
      scopes: k.scopes,
      revokedAt: null,
    };
    await tx.apiKey.upsert({
      where: { keyPrefix: k.keyPrefix },
      create: { keyPrefix: k.keyPrefix, ...data },
      update: data,
    });
  }

  const auditEvents = [
    {
      id: "seed_audit_0001",
      organizationId: orgs.acme,
      actorType: AuditActorType.USER,
      actorId: users.alice,
      action: "organization.created",
      targetType: "organization",
      targetId: orgs.acme,
      metadata: { plan: "PRO" },
      createdAt: T("2025-01-20T09:05:00.000Z"),
    },
    {
      id: "seed_audit_0002",
      organizationId: orgs.acme,
      actorType: AuditActorType.USER,
      actorId: users.alice,
      action: "member.invited",
      targetType: "invitation",
      targetId: "erin@acme.example",
      metadata: { role: "MEMBER" },
      createdAt: T("2025-02-10T16:20:00.000Z"),
    },
    {
      id: "seed_audit_0003",
      organizationId: orgs.acme,
      actorType: AuditActorType.USER,
      actorId: users.alice,
      action: "api_key.created",
      targetType: "api_key",
      targetId: "pgs_dev_acme01",
      metadata: { scopes: ["deploy", "read"] },
      createdAt: T("2025-03-01T11:00:00.000Z"),
    },
    {
      id: "seed_audit_0004",
      organizationId: orgs.globex,
      actorType: AuditActorType.SYSTEM,
      actorId: null,
      action: "project.created",
      targetType: "project",
      targetId: projects["globex-pipeline"],
      metadata: { source: "seed" },
      createdAt: T("2025-03-05T07:45:00.000Z"),
    },
  ];
  for (const { id, ...data } of auditEvents) {
    await tx.auditEvent.upsert({ where: { id }, create: { id, ...data }, update: data });
  }

  return {
    users: USERS.length,
    accounts: accounts.length,
    sessions: 1,
    verificationTokens: 1,
    organizations: ORGS.length,
    memberships: MEMBERSHIPS.length,
    projects: PROJECTS.length,
    invitations: 1,
    apiKeys: API_KEYS.length,
    auditEvents: auditEvents.length,
  };
}

/** Removes the connection string, and its password, from a message before it is printed. */
function redact(message: string, connectionString: string): string {
  let out = message.split(connectionString).join("[DATABASE_URL]");
  try {
    const password = decodeURIComponent(new URL(connectionString).password);
    if (password) out = out.split(password).join("[password]");
  } catch {
    // not a URL: nothing more to hide
  }
  return out.replace(/postgres(?:ql)?:\/\/[^\s'"]+/gi, "[connection string]");
}

/** `?schema=name` in the URL (Prisma's convention) selects the PostgreSQL schema. */
function schemaFromUrl(connectionString: string): string | undefined {
  try {
    return new URL(connectionString).searchParams.get("schema") ?? undefined;
  } catch {
    return undefined;
  }
}

async function main(): Promise<number> {
  const refusal = refuseOnProd(process.env);
  if (refusal) {
    process.stderr.write(refusal + "\n");
    return 1;
  }
  const connectionString = process.env.DATABASE_URL;
  if (!connectionString) {
    process.stderr.write("DATABASE_URL is not set: point it at the dev or test database to seed.\n");
    return 1;
  }
  const schema = schemaFromUrl(connectionString);
  const adapter = new PrismaPg({ connectionString }, schema ? { schema } : undefined);
  const prisma = new PrismaClient({ adapter });
  try {
    await seed(prisma, (message) => console.log(message));
    return 0;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const firstLine = redact(message, connectionString).trim().split("\n").pop() ?? "unknown error";
    process.stderr.write(`Seeding failed: ${firstLine}\n`);
    return 1;
  } finally {
    await prisma.$disconnect().catch(() => undefined);
  }
}

if (require.main === module) {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    () => {
      process.stderr.write("Seeding failed: unexpected error.\n");
      process.exitCode = 1;
    },
  );
}
