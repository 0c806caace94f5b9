/**
 * The deploy session's name: FNV-1a (64 bits) of the folder and the stack,
 * which the C client (infra/bin/step/pgstack-step.c) and the Node.js client
 * compute too. Known answers pin the function itself; another stack or
 * folder gets another session.
 */
import { sessionName, sessionPaths } from "../../infra/core/session/identity";

/** FNV-1a 64 of a string, written out plainly from its definition (offset basis, prime), to check the one in identity.ts. */
function reference(text: string): string {
  let hash = 0xcbf29ce484222325n;
  for (const byte of Buffer.from(text, "utf8")) hash = ((hash ^ BigInt(byte)) * 0x100000001b3n) % 2n ** 64n;
  return hash.toString(16).padStart(16, "0");
}

describe("sessionName", () => {
  it("is FNV-1a 64 of 'pgstack-deploy-v3', the folder and the stack, one per line", () => {
    // Published FNV-1a 64 test vectors: "" and "a".
    expect(reference("")).toBe("cbf29ce484222325");
    expect(reference("a")).toBe("af63dc4c8601ec8c");
    expect(sessionName("/srv/app", "prod")).toBe(reference("pgstack-deploy-v3\n/srv/app\nprod"));
    expect(sessionName("/srv/app", "prod")).toMatch(/^[0-9a-f]{16}$/);
  });

  it("differs by stack and by folder; the token and the socket share it", () => {
    const names = new Set([sessionName("/srv/app", "prod"), sessionName("/srv/app", "staging"), sessionName("/srv/app2", "prod"), sessionName("/srv/ap", "pprod")]);
    expect(names.size).toBe(4);
    const { socket, tokenFile } = sessionPaths("/srv/app", "prod", { XDG_RUNTIME_DIR: "/run/user/0" });
    const name = sessionName("/srv/app", "prod");
    expect(socket).toMatch(new RegExp(`^/run/user/0/pgstack-\\d+/${name}\\.sock$`));
    expect(tokenFile).toBe(socket.replace(/\.sock$/, ".token"));
  });
});
