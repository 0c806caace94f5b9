import { PgstackError } from "../../infra/core/errors";

/**
 * A refusal as people see it: exactly one line on stderr, `pgstack: ` then a
 * sentence (capital first, full stop last), no stack trace, and none of
 * `secrets` (passwords, URLs).
 */
export function expectOneSentence(stderr: string, pattern: RegExp, secrets: string[] = []): void {
  const lines = stderr.trim().split("\n");
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^pgstack: [A-Za-z-`'].*\.$/);
  expect(lines[0]).toMatch(pattern);
  expect(stderr).not.toMatch(/\n\s+at /);
  expect(stderr).not.toMatch(/postgres(ql)?:\/\//);
  for (const s of secrets) expect(stderr).not.toContain(s);
}

/** The PgstackError `promise` rejects with; fails the test when it resolves or throws anything else. */
export async function expectFailure(promise: Promise<unknown>): Promise<PgstackError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(PgstackError);
    return err as PgstackError;
  }
  throw new Error("expected a failure");
}
