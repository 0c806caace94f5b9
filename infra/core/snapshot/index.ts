export * from "./naming";
export * from "./template";
export * from "./identity";
