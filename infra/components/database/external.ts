import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { identityCommandText, parseScriptOutput } from "../command";
import type { DatabaseEndpoint } from "./types";

/** An existing server (Supabase, Neon, a company cluster): pgstack only connects to it. */
export interface ExternalArgs {
  /** Its postgresql:// URL, a secret (`pgstack:externalUrl`). Required. */
  url: pulumi.Input<string>;
}

/** The identity command's inputs. Pure. */
export function externalIdentityArgs(url: pulumi.Input<string>, dir: string): command.local.CommandArgs {
  return { dir, create: identityCommandText("external"), environment: { DATABASE_URL: pulumi.secret(url) } };
}

export function provisionExternal(name: string, args: ExternalArgs, dir: string, parent: pulumi.Resource): DatabaseEndpoint {
  const url = pulumi.secret(pulumi.output(args.url));
  // Asks the server who it is (system identifier, database oid) once, and again whenever the URL changes.
  const probe = new command.local.Command(`${name}-identity`, externalIdentityArgs(url, dir), { parent });
  const identity = pulumi.unsecret(probe.stdout.apply((out) => parseScriptOutput<{ identity: string }>(out, "The identity command").identity));
  return { url, identity, ready: [probe] };
}
