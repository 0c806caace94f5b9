import type * as pulumi from "@pulumi/pulumi";

/** What an engine hands back to the Database component. */
export interface DatabaseEndpoint {
  /** postgresql:// URL of the application database, with its password: always a secret. */
  url: pulumi.Output<string>;
  /**
   * Changes when the database is replaced (a new cluster, container volume or
   * instance); the migration commands carry it in their triggers.
   */
  identity: pulumi.Output<string>;
  /** What must exist before anything connects (the server is up). */
  ready: pulumi.Resource[];
  /** rds only: the DB instance identifier, for aws.rds.Snapshot. */
  rdsInstanceIdentifier?: pulumi.Output<string>;
}
