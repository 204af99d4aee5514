export { runCli, type CliOptions } from "./program.js";
export { listEngines, type EngineListing } from "./commands/engines.js";
export { renderScan } from "./commands/scan.js";
export { generateDemoLibrary, type DemoOptions, type DemoStar } from "./demo-library.js";
