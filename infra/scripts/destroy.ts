/**
 * `npm run destroy [-- --stack <name>] [-- --remove-data]`: `pulumi destroy
 * --yes` on a dev stack (default dev). The embedded server is stopped; its data
 * dir is kept unless --remove-data is given (or the stack sets
 * pgstack:embedded.removeDataOnDestroy). Pre-update snapshots are kept.
 * Staging and prod are not destroyed from here: use `npm run pulumi --
 * destroy --stack <name>` deliberately (prod also has deletion protection).
 */
import { environmentOf } from "../config/schema";
import { PgstackError } from "../core/errors";
import { pulumiForScript, runMain, takeStack } from "./run-pulumi";

async function main(): Promise<number> {
  const { stack, rest } = takeStack(process.argv.slice(2), "dev");
  const removeData = rest.includes("--remove-data");
  const passthrough = rest.filter((a) => a !== "--remove-data");
  if (environmentOf(stack) !== "dev") {
    throw new PgstackError("E_STACK", `refusing to destroy '${stack}' from npm run destroy: run \`npm run pulumi -- destroy --stack ${stack}\` if you really mean it.`);
  }
  const pulumi = await pulumiForScript(stack);
  return pulumi.run(["destroy", "--yes", "--stack", stack, ...passthrough], removeData ? { PGSTACK_DESTROY_REMOVE_DATA: "true" } : {});
}

runMain(main);
