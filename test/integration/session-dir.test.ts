/**
 * The deploy session's folder against another local user (issue 22, item 3):
 * a folder they made, a folder that is their symlink, a folder sprayed with
 * symlinks to a file root can write, a base folder they can swap entries in.
 * The update's program refuses before writing anything (the victim file's
 * bytes and the folder are exactly as before), and both step clients refuse
 * to read a token or hand it to a socket that is not this user's. Runs as
 * root (as CI does): the attacker is `pgstack-other`, made here with useradd.
 */
import { spawn, spawnSync } from "node:child_process";
import { promises as fs, readdirSync, readlinkSync, lstatSync, readFileSync } from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { run } from "../../infra/cli/main";
import { serveMigrationSteps } from "../../infra/cli/session";
import { sessionName } from "../../infra/core/session/identity";
import type { Session } from "../../infra/core/session/server";

jest.setTimeout(60_000);

const REPO = path.resolve(__dirname, "..", "..");
const OTHER = "pgstack-other";
const STEP = ["apply", "20250101000000_one", "--dir", "migrations"];
const CLIENTS: Record<string, string[]> = {
  c: ["sh", path.join(REPO, "infra", "bin", "pgstack-step")],
  node: ["node", path.join(REPO, "infra", "bin", "step-client.js")],
};
const VICTIM_BYTES = "root's own file: must never change\n";

let otherUid: number;
let otherGid: number;
let scratch: string;
/** A 1777 folder where the attacker makes folders of their own. */
let pub: string;
let project: string;
let victim: string;
let stack: string;
let name: string;
let session: Session | undefined;

/** The second local user, made once (idempotent: a run before or a parallel one may have made it). */
function ensureOtherUser(): { uid: number; gid: number } {
  const id = () => spawnSync("id", ["-u", OTHER], { encoding: "utf8" });
  if (id().status !== 0) spawnSync("useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OTHER], { stdio: "ignore" });
  const found = id();
  if (found.status !== 0) throw new Error(`could not create the local user ${OTHER} (these tests run as root)`);
  return { uid: Number(found.stdout.trim()), gid: Number(spawnSync("id", ["-g", OTHER], { encoding: "utf8" }).stdout.trim()) };
}

/** Runs `script` as the attacker. */
function asOther(script: string): void {
  const result = spawnSync("runuser", ["-u", OTHER, "--", "sh", "-ec", script], { encoding: "utf8" });
  if (result.status !== 0) throw new Error(`as ${OTHER}: ${script}: ${result.stderr}`);
}

/** Everything observable about a folder: its own mtime, and each entry with its link target or bytes. */
function folderState(dir: string): unknown {
  const info = lstatSync(dir);
  if (info.isSymbolicLink()) return { link: readlinkSync(dir) };
  return {
    mtime: info.mtimeMs,
    mode: info.mode,
    uid: info.uid,
    entries: readdirSync(dir)
      .sort()
      .map((entry) => {
        const p = path.join(dir, entry);
        const e = lstatSync(p);
        return [entry, e.isSymbolicLink() ? `-> ${readlinkSync(p)}` : e.isFile() ? readFileSync(p, "utf8") : `mode ${e.mode}`];
      }),
  };
}

/** A fresh base folder (what XDG_RUNTIME_DIR points at), root's, with `mode`. */
async function baseFolder(mode: number): Promise<string> {
  const base = await fs.mkdtemp(path.join(scratch, "base-"));
  await fs.chmod(base, mode);
  return base;
}

/** What serving from `base` threw (undefined: it served). */
const refusedBy = (base: string) => serve(base).then((s) => void (session = s), (err: unknown) => err);

const serve = (base: string) =>
  serveMigrationSteps({ projectDir: project, stack, databaseUrl: Promise.resolve("postgres://never-used"), steps: [STEP], runner: run, env: { ...process.env, XDG_RUNTIME_DIR: base } });

/** Symlinks, as the attacker, named as every token and socket this session could write (pids around ours), to the victim. */
function spray(dir: string): void {
  const names = [`${name}.token`, `${name}.sock`];
  for (let pid = Math.max(1, process.pid - 200); pid <= process.pid + 200; pid++) names.push(`${name}.token.${pid}`);
  asOther(`cd '${dir}'; for n in ${names.join(" ")}; do ln -s '${victim}' "$n"; done`);
}

beforeAll(async () => {
  ({ uid: otherUid, gid: otherGid } = ensureOtherUser());
  // Under the system temp folder (1777) so the attacker can reach it; nothing here touches the real pgstack-<uid>.
  scratch = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-sessdir-"));
  await fs.chmod(scratch, 0o755);
  pub = path.join(scratch, "public");
  await fs.mkdir(pub);
  await fs.chmod(pub, 0o1777);
  project = await fs.mkdtemp(path.join(scratch, "project-"));
  stack = `test-${path.basename(project)}`;
  name = sessionName(await fs.realpath(project), stack);
  const vault = await fs.mkdtemp(path.join(scratch, "vault-"));
  victim = path.join(vault, "victim");
  await fs.writeFile(victim, VICTIM_BYTES, { mode: 0o644 });
});

afterEach(() => {
  session?.close();
  session = undefined;
});

afterAll(async () => {
  await fs.rm(scratch, { recursive: true, force: true });
});

describe("the update's program refuses a session folder another user can reach, writing nothing", () => {
  const refusal = (dir: string, why: string) => ({
    code: "E_SESSION_DIR",
    message: `The deploy session's folder ${dir} ${why}: remove it, or set XDG_RUNTIME_DIR to a folder only you can change, and run again.`,
  });

  it("a folder another user made (empty, open to all)", async () => {
    const base = await baseFolder(0o1777);
    const dir = path.join(base, `pgstack-${process.getuid!()}`);
    asOther(`mkdir '${dir}'; chmod 777 '${dir}'`);
    const before = folderState(dir);
    const err = await refusedBy(base);
    // Not even a file created and removed again: the folder's mtime is unchanged.
    expect(folderState(dir)).toEqual(before);
    expect(err).toMatchObject(refusal(dir, `belongs to another user (uid ${otherUid})`));
  });

  it("a folder sprayed with symlinks to a file root can write", async () => {
    const base = await baseFolder(0o1777);
    const dir = path.join(base, `pgstack-${process.getuid!()}`);
    asOther(`mkdir '${dir}'; chmod 777 '${dir}'`);
    spray(dir);
    const before = folderState(dir);
    const err = await refusedBy(base);
    expect(await fs.readFile(victim, "utf8")).toBe(VICTIM_BYTES);
    expect(folderState(dir)).toEqual(before);
    expect(err).toMatchObject(refusal(dir, `belongs to another user (uid ${otherUid})`));
  });

  it("a folder that is another user's symlink (to their sprayed folder)", async () => {
    const base = await baseFolder(0o1777);
    const dir = path.join(base, `pgstack-${process.getuid!()}`);
    const theirs = path.join(base, "theirs");
    asOther(`mkdir '${theirs}'; chmod 777 '${theirs}'; ln -s '${theirs}' '${dir}'`);
    spray(theirs);
    const before = [folderState(dir), folderState(theirs), folderState(base)];
    const err = await refusedBy(base);
    expect(await fs.readFile(victim, "utf8")).toBe(VICTIM_BYTES);
    expect([folderState(dir), folderState(theirs), folderState(base)]).toEqual(before);
    expect(err).toMatchObject(refusal(dir, "is a symlink"));
  });

  it("a base folder others can write to without the sticky bit, or one behind another user's folder", async () => {
    // Another user could rename the session folder away and put theirs in its place between the check and the write.
    const open = await baseFolder(0o777);
    const dir = path.join(open, `pgstack-${process.getuid!()}`);
    const before = folderState(open);
    const err = await refusedBy(open);
    expect(folderState(open)).toEqual(before);
    expect(err).toMatchObject(refusal(dir, `is inside ${open}, which other users can write to and which lacks the sticky bit`));

    // A root-owned base reached through a symlink in a folder of theirs: they can point it elsewhere at any time.
    const good = await baseFolder(0o755);
    const hop = path.join(pub, "hop");
    asOther(`mkdir '${hop}'; ln -s '${good}' '${hop}/base'`);
    const via = path.join(hop, "base");
    const viaErr = await refusedBy(via);
    expect(await fs.readdir(good)).toEqual([]);
    expect(viaErr).toMatchObject(refusal(path.join(via, `pgstack-${process.getuid!()}`), `is inside ${hop}, which belongs to another user (uid ${otherUid})`));
  });

  it("serves from its own 0700 folder (also through root's symlink) and removes only the token and socket it made", async () => {
    const base = await baseFolder(0o1777);
    const link = path.join(scratch, "base-link");
    await fs.symlink(base, link);
    session = await serve(link);
    const dir = path.join(base, `pgstack-${process.getuid!()}`);
    expect(lstatSync(dir).mode & 0o7777).toBe(0o700);
    expect(lstatSync(path.join(dir, `${name}.token`)).mode & 0o777).toBe(0o600);
    expect((await fs.readdir(dir)).sort()).toEqual([`${name}.sock`, `${name}.token`]);
    // Another session's token took this name meanwhile: closing leaves it alone.
    await fs.rm(path.join(dir, `${name}.token`));
    await fs.writeFile(path.join(dir, `${name}.token`), "someone else's", { mode: 0o600 });
    session.close();
    session = undefined;
    expect(await fs.readdir(dir)).toEqual([`${name}.token`]);
    expect(await fs.readFile(path.join(dir, `${name}.token`), "utf8")).toBe("someone else's");
  });
});

describe("the step clients read a token only from this user's private folder and hand it only to this user's program", () => {
  /** A stand-in for a session at `socketPath`: records every byte it is sent. */
  async function listener(socketPath: string): Promise<{ received: () => string; close: () => Promise<void> }> {
    let received = "";
    const server = net.createServer((s) => {
      s.on("data", (d) => (received += d));
      s.on("error", () => undefined);
    });
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    return { received: () => received, close: () => new Promise((resolve) => server.close(() => resolve())) };
  }

  function step(client: string[], base: string): Promise<{ code: number; stderr: string }> {
    const env: NodeJS.ProcessEnv = { ...process.env, PGSTACK_STACK: stack, XDG_RUNTIME_DIR: base };
    delete env.DATABASE_URL;
    const child = spawn(client[0], [...client.slice(1), ...STEP], { cwd: project, env, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    // A client that connected and waits for an answer the stand-in never gives.
    const stuck = setTimeout(() => child.kill("SIGKILL"), 5_000);
    return new Promise((resolve) =>
      child.on("close", (code) => {
        clearTimeout(stuck);
        resolve({ code: code ?? -1, stderr });
      }),
    );
  }

  /** A folder of ours as the program makes it, with a token and a listening stand-in. */
  async function sessionFolder(baseMode: number) {
    const base = await baseFolder(baseMode);
    const dir = path.join(base, `pgstack-${process.getuid!()}`);
    await fs.mkdir(dir, { mode: 0o700 });
    await fs.writeFile(path.join(dir, `${name}.token`), "the-token", { mode: 0o600 });
    return { base, dir, server: await listener(path.join(dir, `${name}.sock`)) };
  }

  for (const [kind, client] of Object.entries(CLIENTS)) {
    it(`${kind}: refuses in a base folder others can write to without the sticky bit, and sends nothing`, async () => {
      const { base, dir, server } = await sessionFolder(0o777);
      try {
        const result = await step(client, base);
        expect(server.received()).toBe("");
        expect(result).toEqual({
          code: 1,
          stderr: `pgstack-step: the deploy session's folder ${dir} is inside ${base}, which other users can write to and which lacks the sticky bit: remove it, or set XDG_RUNTIME_DIR to a folder only you can change, and run again\n`,
        });
      } finally {
        await server.close();
      }
    });

    it(`${kind}: refuses a folder another user made, with the program's sentence`, async () => {
      const base = await baseFolder(0o1777);
      const dir = path.join(base, `pgstack-${process.getuid!()}`);
      asOther(`mkdir '${dir}'; chmod 700 '${dir}'`);
      expect(await step(client, base)).toEqual({
        code: 1,
        stderr: `pgstack-step: the deploy session's folder ${dir} belongs to another user (uid ${otherUid}): remove it, or set XDG_RUNTIME_DIR to a folder only you can change, and run again\n`,
      });
    });

    it(`${kind}: does not read a token through a symlink`, async () => {
      const { base, dir, server } = await sessionFolder(0o1777);
      const token = path.join(dir, `${name}.token`);
      await fs.rm(token);
      await fs.symlink(victim, token);
      try {
        const result = await step(client, base);
        expect(server.received()).toBe("");
        expect(result.code).toBe(1);
        expect(result.stderr).toMatch(/^pgstack-step: no deploy session for stack '[^']+' in .*: the migration steps run only inside `pulumi up`, whose program serves them\n$/);
      } finally {
        await server.close();
      }
    });
  }

  it("c: does not hand the token to a socket another user serves", async () => {
    const base = await baseFolder(0o1777);
    const dir = path.join(base, `pgstack-${process.getuid!()}`);
    await fs.mkdir(dir, { mode: 0o700 });
    await fs.writeFile(path.join(dir, `${name}.token`), "the-token", { mode: 0o600 });
    // The attacker listens in a folder of theirs; the socket is then moved into ours (as a swapped folder would show it).
    const theirs = path.join(pub, "their-socket");
    asOther(`mkdir '${theirs}'`);
    const out = path.join(theirs, "received");
    const script = `require("net").createServer((s) => s.on("data", (d) => require("fs").appendFileSync(${JSON.stringify(out)}, d))).listen(${JSON.stringify(path.join(theirs, "s.sock"))})`;
    // setpriv execs the server itself, so killing it leaves nothing running.
    const attacker = spawn("setpriv", [`--reuid=${otherUid}`, `--regid=${otherGid}`, "--clear-groups", process.execPath, "-e", script], { stdio: "ignore" });
    try {
      for (let i = 0; i < 100 && !(await fs.stat(path.join(theirs, "s.sock")).catch(() => undefined)); i++) await new Promise((r) => setTimeout(r, 50));
      await fs.rename(path.join(theirs, "s.sock"), path.join(dir, `${name}.sock`));
      const result = await step(CLIENTS.c, base);
      await new Promise((r) => setTimeout(r, 200));
      expect(await fs.readFile(out, "utf8").catch(() => "")).toBe("");
      expect(result).toEqual({
        code: 1,
        stderr: `pgstack-step: the deploy session's socket ${path.join(dir, `${name}.sock`)} is not served by this user: remove it and run \`pulumi up\` again\n`,
      });
    } finally {
      attacker.kill("SIGKILL");
    }
  });
});
