import { Command, Option } from "commander";
import { clusterDown, clusterUp } from "../../core/cluster/lifecycle";
import { PgstackError } from "../../core/errors";
import type { Context } from "../context";

/**
 * `pgstack cluster up|down`: the embedded engine's cluster, as the Database
 * component's command resource runs it (`up` is its create, `down` its delete).
 */
export function clusterCommand(ctx: Context): Command {
  const cluster = new Command("cluster").description("the embedded engine's PostgreSQL cluster (run by the Database component)");

  cluster.addCommand(
    new Command("up")
      .description("create the cluster if needed, start it, create the database; prints its identity")
      .requiredOption("--data-dir <path>", "the cluster's data directory")
      .requiredOption("--port <n>", "TCP port on 127.0.0.1")
      .requiredOption("--database <name>", "the database to create if missing")
      .option("--postgres-version <major>", "the PostgreSQL major to run (default: the installed embedded binaries'); a data dir of another major is refused")
      .addOption(new Option("--json", "machine-readable output on stdout"))
      .action(async (flags: { dataDir: string; port: string; database: string; postgresVersion?: string; json?: boolean }) => {
        if (!/^\d+$/.test(flags.port) || Number(flags.port) < 1 || Number(flags.port) > 65535) {
          throw new PgstackError("E_USAGE", `--port must be a TCP port number (got '${flags.port}').`);
        }
        if (flags.postgresVersion !== undefined && !/^\d+$/.test(flags.postgresVersion)) {
          throw new PgstackError("E_USAGE", `--postgres-version must be a PostgreSQL major such as 18 (got '${flags.postgresVersion}').`);
        }
        const result = await clusterUp({ dataDir: flags.dataDir, port: Number(flags.port), database: flags.database, major: flags.postgresVersion }, ctx.logger(flags));
        ctx.output.out(flags.json ? JSON.stringify(result) : `PostgreSQL ready on 127.0.0.1:${result.port}, database ${result.database}.`);
      })
      .exitOverride(),
  );

  cluster.addCommand(
    new Command("down")
      .description("stop the cluster; keep its data unless --remove-data (or PGSTACK_DESTROY_REMOVE_DATA=true)")
      .requiredOption("--data-dir <path>", "the cluster's data directory")
      .option("--remove-data", "also delete the data directory and its password file")
      .action(async (flags: { dataDir: string; removeData?: boolean }) => {
        const removeData = Boolean(flags.removeData) || ctx.env.PGSTACK_DESTROY_REMOVE_DATA === "true";
        await clusterDown({ dataDir: flags.dataDir, removeData }, ctx.logger({}));
      })
      .exitOverride(),
  );
  return cluster;
}
