export * from "./contracts.js";
export * from "./define.js";
export * from "./registry.js";
export * from "./loader.js";
export * from "./events.js";
export * from "./runner.js";
export * as tokens from "./tokens.js";
export * from "./checkpoints.js";
export * from "./driver.js";
