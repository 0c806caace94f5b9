/**
 * Prints the identity of the database at $DATABASE_URL as one JSON line, for
 * the docker and external engines' identity command:
 *
 *   node -r tsx/cjs infra/scripts/identity.ts --engine <engine>
 */
import { errorSentence } from "../core/errors";
import { databaseIdentity } from "../core/snapshot/identity";

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  try {
    const url = env.DATABASE_URL;
    if (!url) {
      process.stderr.write("pgstack: identity.ts needs DATABASE_URL in its environment.\n");
      return 1;
    }
    const i = argv.indexOf("--engine");
    const engine = i >= 0 ? argv[i + 1] : "db";
    const id = await databaseIdentity(url);
    process.stdout.write(JSON.stringify({ ...id, identity: `${engine}:${id.identity}` }) + "\n");
    return 0;
  } catch (err) {
    process.stderr.write(`pgstack: ${errorSentence(err)}\n`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
