// Regenerate packages/core/schema.json (JSON Schema of tile_compile.yaml) and docs/errors.md from the sources of truth.
import { writeFileSync, mkdirSync } from "node:fs";
import { configJsonSchema, configReferenceMarkdown, errorCatalog, jobJsonSchema } from "../packages/core/dist/index.js";

writeFileSync(new URL("../packages/core/schema.json", import.meta.url), JSON.stringify(configJsonSchema(), null, 2) + "\n");
writeFileSync(new URL("../packages/core/job.schema.json", import.meta.url), JSON.stringify(jobJsonSchema(), null, 2) + "\n");
mkdirSync(new URL("../docs/", import.meta.url), { recursive: true });
const rows = Object.entries(errorCatalog).map(
  ([code, e]) => `| \`${code}\` | ${e.title} | ${e.exitCode} | ${e.hint({}).replace(/\|/g, "\\|").replace(/\n/g, " ")} |`,
);
writeFileSync(
  new URL("../docs/errors.md", import.meta.url),
  `# Error codes\n\nGenerated from \`packages/errors/src/catalog.ts\` by \`pnpm schema\`. Codes are stable: never renamed or reused.\nExit codes: 78 configuration, 130 cancelled (not an error code: an AbortError), 1 anything else.\n\n| code | title | exit | hint |\n|---|---|---|---|\n${rows.join("\n")}\n`,
);
writeFileSync(new URL("../docs/configuration.md", import.meta.url), configReferenceMarkdown());
console.log("wrote packages/core/schema.json, packages/core/job.schema.json, docs/errors.md and docs/configuration.md");
