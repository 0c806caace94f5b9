import type { MigrationStatus } from "../core/migrations/status";
import type { ExecutionMode } from "../core/migrations/mode";

/** Where command output goes; injectable so tests capture it. */
export interface Output {
  out(text: string): void;
  err(text: string): void;
}

export const processOutput: Output = {
  out: (t) => process.stdout.write(t.endsWith("\n") ? t : t + "\n"),
  err: (t) => process.stderr.write(t.endsWith("\n") ? t : t + "\n"),
};

/** `modes`: how each migration still to run would run (see core/migrations/mode.ts). */
export function statusJson(status: MigrationStatus[], modes?: Map<string, ExecutionMode>) {
  return {
    migrations: status.map((s) => {
      const mode = modes?.get(s.name);
      return {
        name: s.name,
        checksum: s.checksum,
        state: s.state,
        appliedAt: s.appliedAt ? s.appliedAt.toISOString() : null,
        ...(mode ? { mode, atomic: mode === "transaction" } : {}),
        ...(s.resume ? { appliedSteps: s.resume.steps } : {}),
      };
    }),
  };
}

/** A plain table: columns padded to the widest cell. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join("  ");
  return [line(headers), ...rows.map(line)].join("\n");
}

/** Two reports in two columns, the left one padded to its widest line. Pure. */
export function sideBySide(left: string[], right: string[], gap = "  |  "): string {
  const width = Math.max(0, ...left.map((l) => l.length));
  const rows = Math.max(left.length, right.length);
  const out: string[] = [];
  for (let i = 0; i < rows; i++) out.push(`${(left[i] ?? "").padEnd(width)}${gap}${right[i] ?? ""}`.trimEnd());
  return out.join("\n");
}
