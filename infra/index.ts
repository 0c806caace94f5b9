/**
 * The Pulumi program (Pulumi.yaml `main`) of this repository's dev, staging and
 * prod stacks, written as an application's program would be: one PgStack
 * through pgstack's public entry, every setting from the stack's `pgstack:*`
 * config, and its outputs as the stack's (the tools read them).
 */
import { PgStack } from "./package";

const db = new PgStack("pgstack");

export = db.outputs();
