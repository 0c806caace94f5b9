export * from "./verify";
