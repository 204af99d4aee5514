export * from "./fits/index.js";
export * from "./errors/index.js";
