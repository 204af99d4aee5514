export { runCli, type CliOptions } from "./program.js";
export { listEngines, type EngineListing } from "./commands/engines.js";
export { renderScan } from "./commands/scan.js";
// Also `@tile-compile/cli/demo`, which does not load the DI container (no reflect-metadata needed).
export { generateDemoLibrary, type DemoOptions, type DemoStar } from "./demo-library.js";
