/** `pgstack rollback`: rollback.ts's main (it runs only as the main module, and pgstack's bin loads it). */
import { rollback } from "./rollback";
import { runMain } from "./run-pulumi";

runMain(() => rollback(process.argv.slice(2)));
