import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { load } from "js-yaml";
import { ensureActionlint } from "../../infra/toolchain/actionlint";
import { REPO_ROOT } from "../support/fixtures";

type Job = {
  needs?: string | string[];
  if?: string;
  environment?: string;
  concurrency?: { group: string; "cancel-in-progress": boolean };
  steps: { name?: string; uses?: string; run?: string; with?: Record<string, unknown> }[];
  strategy?: { matrix: { stack: string[] } };
};
type Workflow = { on: Record<string, unknown>; permissions: Record<string, string>; jobs: Record<string, Job> };

const workflow = (name: string) => load(readFileSync(path.join(REPO_ROOT, ".github", "workflows", name), "utf8")) as Workflow;

describe("GitHub workflows", () => {
  it("pass actionlint", () => {
    const bin = ensureActionlint();
    // actionlint exits non-zero and prints each problem when a workflow is wrong.
    const out = execFileSync(bin, ["-color=false", ".github/workflows/preview.yml", ".github/workflows/deploy.yml"], { cwd: REPO_ROOT, encoding: "utf8" });
    expect(out).toBe("");
  });

  it("preview: tests, then a preview of staging and prod with one updated plan comment", () => {
    const wf = workflow("preview.yml");
    expect(Object.keys(wf.on)).toEqual(["pull_request"]);
    expect(wf.jobs.test.steps.some((s) => s.run === "bash .ci/run")).toBe(true);
    expect(wf.jobs.preview.strategy!.matrix.stack).toEqual(["staging", "prod"]);
    const steps = wf.jobs.preview.steps;
    expect(steps.find((s) => s.uses?.startsWith("pulumi/actions@"))?.with).toMatchObject({ command: "preview" });
    expect(steps.find((s) => s.name === "Plan, lint and rehearsal")?.run).toMatch(/pgstack plan --stack "\$STACK" --markdown/);
    // One comment for every stack, found by its marker and edited in place.
    expect(wf.jobs.comment.needs).toBe("preview");
    const comment = wf.jobs.comment.steps.find((s) => s.uses?.startsWith("actions/github-script@"));
    expect(String(comment?.with?.script)).toMatch(/updateComment/);
    expect(String(comment?.with?.script)).toMatch(/pgstack-plan -->/);
  });

  it("deploy: staging on push, prod on release behind an approved environment, one deploy per stack", () => {
    const wf = workflow("deploy.yml");
    expect(Object.keys(wf.on).sort()).toEqual(["push", "release", "workflow_dispatch"]);
    expect(wf.jobs.staging.concurrency).toEqual({ group: "deploy-staging", "cancel-in-progress": false });
    expect(wf.jobs.prod.concurrency).toEqual({ group: "deploy-prod", "cancel-in-progress": false });
    expect(wf.jobs.prod.environment).toBe("production");
    expect(wf.jobs.prod.if).toMatch(/release/);
    expect(wf.jobs.staging.if).toMatch(/push/);
    // Where the database is reachable: runner labels from a repository variable.
    for (const job of [wf.jobs.staging, wf.jobs.prod]) {
      expect((job as Job & { "runs-on": string })["runs-on"]).toBe(`\${{ fromJSON(vars.PGSTACK_DEPLOY_RUNNER || '"ubuntu-latest"') }}`);
    }
  });

  it.each(["preview.yml", "deploy.yml"])("%s assumes cloud roles through OIDC and carries no long-lived keys", (name) => {
    const text = readFileSync(path.join(REPO_ROOT, ".github", "workflows", name), "utf8");
    const wf = workflow(name);
    expect(wf.permissions["id-token"]).toBe("write");
    expect(text).not.toMatch(/aws-access-key-id|aws-secret-access-key|AWS_SECRET_ACCESS_KEY/);
    for (const job of Object.values(wf.jobs)) {
      const aws = job.steps.find((s) => s.uses?.startsWith("aws-actions/configure-aws-credentials@"));
      if (aws) expect(aws.with?.["role-to-assume"]).toMatch(/^\$\{\{ vars\.AWS_\w+_ROLE_ARN \}\}$/);
    }
  });
});
