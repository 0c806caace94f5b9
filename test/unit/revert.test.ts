import { sideBySide } from "../../infra/cli/output";
import { comparableSchema, compareCatalogs, dependentConflicts, firstDifference, rehearsalDifference, touchedBy, type Dependent } from "../../infra/core/revert/revert";

const catalog = (columns: Record<string, string>, enumValues: string[] = [], constraints: Record<string, string> = {}) => ({
  tables: new Set(Object.keys(columns).map((c) => c.split(".")[0])),
  columns: new Map(Object.entries(columns)),
  enumValues: new Set(enumValues),
  constraints: new Map(Object.entries(constraints)),
});

describe("what a reverse drops and what it cannot give back", () => {
  it("reports what the reverted migrations created as drops, and what they removed or rewrote as losses", () => {
    const before = catalog({ "users.id": "integer", "users.email": "text", "users.legacy": "text", "gone.id": "integer" }, ["Role.USER"], {});
    const now = catalog({ "users.id": "integer", "users.email": "character varying(100)", "users.nickname": "text", "tags.id": "integer" }, ["Role.USER", "Role.GUEST"], {
      users_email_check: "users",
      tags_fk: "tags",
    });
    const { drops, losses } = compareCatalogs(now, before);
    expect(drops).toEqual([
      { kind: "table", name: "tags" },
      { kind: "column", name: "users.nickname" },
      { kind: "enum value", name: "Role.GUEST" },
      // A constraint of a table the reverse drops whole is not listed on its own.
      { kind: "constraint", name: "users_email_check" },
    ]);
    expect(losses).toEqual([
      "column users.email was changed from text to character varying(100): converting it back may not give back the values it held",
      "table gone was dropped by a reverted migration: the reverse recreates it empty",
      "column users.legacy was dropped by a reverted migration: the reverse recreates it without the values it held",
    ]);
  });

  it("compares schema dumps with each table's columns in any order, and names the first difference", () => {
    const a = "-- comment\nCREATE TABLE public.t (\n    id integer,\n    b text\n);\n";
    const b = "CREATE TABLE public.t (\n    b text,\n    id integer\n);\n";
    expect(comparableSchema(a)).toEqual(comparableSchema(b));
    expect(firstDifference(a, b)).toBeUndefined();
    expect(firstDifference(a, "CREATE TABLE public.t (\n    id integer\n);\n")).toBe("'b text' where 'id integer' was expected");
  });
});

describe("the rehearsal's end state with objects outside the history", () => {
  const users = "CREATE TABLE public.users (\n    id integer\n);";
  const good = "CREATE TABLE public.good_t (\n    id integer\n);";
  const lw = "CREATE TABLE public.lw (\n    tag text\n);";
  const dump = (...statements: string[]) => statements.join("\n\n") + "\n";
  const schemas = { head: dump(users, good), target: dump(users), before: dump(users, good, lw) };

  it("expects the target's schema plus what the copy held outside the history", () => {
    expect(rehearsalDifference({ ...schemas, after: dump(users, lw) })).toBeUndefined();
    expect(rehearsalDifference({ ...schemas, after: dump(lw, users) })).toBeUndefined();
  });

  it("names an object outside the history the reverse dropped, and one it failed to drop", () => {
    expect(rehearsalDifference({ ...schemas, after: dump(users) })).toBe("'CREATE TABLE public.lw (' is missing, which the target or the copy outside the history has");
    expect(rehearsalDifference({ ...schemas, after: dump(users, good, lw) })).toBe("'CREATE TABLE public.good_t (' is there, but neither the target nor the copy outside the history has it");
  });

  it("compares line by line when the copy held nothing outside the history", () => {
    expect(rehearsalDifference({ ...schemas, before: schemas.head, after: dump(users) })).toBeUndefined();
    expect(rehearsalDifference({ ...schemas, before: schemas.head, after: dump(users, lw) })).toBe("'CREATE TABLE public.lw (' where '(end)' was expected");
  });
});

describe("sideBySide", () => {
  it("pads the left column to its widest line", () => {
    expect(sideBySide(["ab", "a"], ["x", "y", "z"])).toBe("ab  |  x\na   |  y\n    |  z");
  });
});

describe("objects outside the history that rely on what the reverse changes", () => {
  const catalog = (tables: string[], columns: Record<string, string>) => ({ tables: new Set(tables), columns: new Map(Object.entries(columns)), enumValues: new Set<string>(), constraints: new Map<string, string>() });
  // The reverse drops users.nick (added by the reverted migration) and the table good_t.
  const head = catalog(["users", "good_t"], { "users.id": "integer", "users.email": "text", "users.nick": "text", "good_t.id": "integer" });
  const target = catalog(["users"], { "users.id": "integer", "users.email": "text" });
  const touched = touchedBy(["table public.users", "table public.good_t"], "public", head, target);
  const history = [{ what: "default value for column id of table good_t", table: "good_t", column: "id" }];
  const conflicts = (live: Dependent[]) => dependentConflicts({ live: [...history, ...live], head: history, touchedTables: touched.tables, touchedColumns: touched.columns });

  it("refuses a hand-made trigger on a changed table, a view on a dropped column, anything on a dropped table", () => {
    expect(
      conflicts([
        { what: "trigger users_nick on table users", table: "users", column: null },
        { what: "view nicks", table: "users", column: "nick" },
        { what: "index good_t_idx", table: "good_t", column: "id" },
        { what: "function public.f()", table: "good_t", column: null },
      ]),
    ).toEqual([
      "function public.f() (made outside the migration history; depends on table good_t, which the reverse changes)",
      "index good_t_idx (made outside the migration history; depends on column good_t.id, which the reverse changes)",
      "trigger users_nick on table users (made outside the migration history; depends on table users, which the reverse changes)",
      "view nicks (made outside the migration history; depends on column users.nick, which the reverse changes)",
    ]);
  });

  it("leaves what relies only on columns the reverse keeps, on untouched tables, or is the history's own", () => {
    expect(
      conflicts([
        { what: "index users_email_idx", table: "users", column: "email" },
        { what: "view emails", table: "users", column: "email" },
        { what: "trigger lw_t on table lw", table: "lw", column: null },
      ]),
    ).toEqual([]);
  });
});
