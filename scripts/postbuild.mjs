// Make the CLI bin executable after tsc (tsc does not keep file modes).
import { chmodSync } from "node:fs";
chmodSync(new URL("../packages/cli/dist/main.js", import.meta.url), 0o755);
