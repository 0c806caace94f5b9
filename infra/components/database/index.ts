export * from "./database";
export * from "./types";
export * from "./embedded";
export * from "./docker";
export * from "./rds";
export * from "./external";
