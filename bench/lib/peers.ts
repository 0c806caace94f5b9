/**
 * The peers the apply benchmark compares against, installed into bench/.work
 * (never into the project's package.json): node-pg-migrate from npm, Flyway
 * from Maven Central. Installed once, reused after.
 */
import { existsSync, promises as fs, readdirSync } from "node:fs";
import * as path from "node:path";
import { log, runTimed, WORK } from "./common";

export const NODE_PG_MIGRATE_VERSION = "9.0.0";
/**
 * Flyway 11.14.1: the newest flyway-commandline whose whole dependency tree is
 * on Maven Central (13.x depends on artifacts published only to
 * repo.gradle.org, which this machine cannot reach).
 */
export const FLYWAY_VERSION = "11.14.1";
const POSTGRESQL_JDBC_VERSION = "42.7.8";

const PEERS = path.join(WORK, "peers");

export async function ensureNodePgMigrate(): Promise<string> {
  const dir = path.join(PEERS, "npm");
  const bin = path.join(dir, "node_modules", "node-pg-migrate", "bin", "node-pg-migrate.js");
  if (existsSync(bin)) return bin;
  log(`installing node-pg-migrate@${NODE_PG_MIGRATE_VERSION} into ${dir}`);
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(path.join(dir, "package.json"), JSON.stringify({ name: "bench-peers", private: true }) + "\n");
  await runTimed("npm", ["install", "--no-audit", "--no-fund", `node-pg-migrate@${NODE_PG_MIGRATE_VERSION}`], { cwd: dir, memory: false });
  return bin;
}

const FLYWAY_POM = `<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>bench</groupId><artifactId>flyway-peer</artifactId><version>1</version>
  <packaging>pom</packaging>
  <!-- flyway-commandline's tree resolves jackson-core 2.17 next to databind 2.19, which fails at start-up -->
  <dependencyManagement><dependencies>
    <dependency><groupId>com.fasterxml.jackson.core</groupId><artifactId>jackson-core</artifactId><version>2.19.1</version></dependency>
  </dependencies></dependencyManagement>
  <dependencies>
    <dependency><groupId>org.flywaydb</groupId><artifactId>flyway-commandline</artifactId><version>${FLYWAY_VERSION}</version></dependency>
    <dependency><groupId>org.flywaydb</groupId><artifactId>flyway-database-postgresql</artifactId><version>${FLYWAY_VERSION}</version></dependency>
    <dependency><groupId>org.postgresql</groupId><artifactId>postgresql</artifactId><version>${POSTGRESQL_JDBC_VERSION}</version></dependency>
  </dependencies>
</project>
`;

/**
 * Jars Flyway needs for PostgreSQL. The full flyway-commandline tree (271
 * jars, every database's driver) works too but starts slower; the slim class
 * path is the fairest Flyway we can run.
 */
const SLIM = /^(flyway-(commandline|core|database-postgresql|verb-|nc-core|nc-scanners|nc-callbacks|reports)|jackson-(core|databind|annotations|dataformat-toml|dataformat-xml|datatype-jsr310)|jansi|commons-text|commons-lang3|commons-io|slf4j|postgresql-|gson|woodstox|stax2)/;

export async function ensureFlyway(): Promise<{ classpath: string; jars: number }> {
  const dir = path.join(PEERS, "flyway");
  const lib = path.join(dir, "lib");
  if (!existsSync(path.join(lib, `flyway-commandline-${FLYWAY_VERSION}.jar`))) {
    log(`fetching flyway-commandline ${FLYWAY_VERSION} from Maven Central into ${lib}`);
    await fs.mkdir(dir, { recursive: true });
    await fs.writeFile(path.join(dir, "pom.xml"), FLYWAY_POM);
    await runTimed("mvn", ["-q", "-B", "dependency:copy-dependencies", `-DoutputDirectory=${lib}`], { cwd: dir, memory: false });
  }
  const jars = readdirSync(lib).filter((f) => f.endsWith(".jar") && SLIM.test(f));
  return { classpath: jars.map((j) => path.join(lib, j)).join(":"), jars: jars.length };
}

export async function javaVersion(): Promise<string> {
  const r = await runTimed("java", ["-version"], { memory: false });
  return r.stderr.split("\n")[0].trim();
}
