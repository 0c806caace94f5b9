/**
 * The two folders pgstack tells apart: the user's Pulumi project (its
 * Pulumi.yaml, migrations, `.pgstack/`, where everything is read and written)
 * and pgstack's own package (this checkout, or node_modules/pgstack, maybe
 * read-only: only read). In this repository they are the same folder.
 */
import { existsSync } from "node:fs";
import * as path from "node:path";

/** The nearest folder from `from` upwards that holds a Pulumi.yaml (or Pulumi.yml); undefined when none does. */
export function findProjectDir(from: string = process.cwd()): string | undefined {
  for (let dir = path.resolve(from); ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, "Pulumi.yaml")) || existsSync(path.join(dir, "Pulumi.yml"))) return dir;
    if (path.dirname(dir) === dir) return undefined;
  }
}

/** pgstack's package folder: the nearest package.json above this module (from infra/core, dist/infra/core or a bundle in dist/). */
export function packageDir(from: string = __dirname): string {
  for (let dir = path.resolve(from); ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, "package.json")) && existsSync(path.join(dir, "infra", "bin", "pgstack.js"))) return dir;
    if (path.dirname(dir) === dir) return path.resolve(from, "..", "..");
  }
}
