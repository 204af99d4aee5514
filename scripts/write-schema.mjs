// Regenerate packages/core/schema.json (JSON Schema of tile_compile.yaml) and docs/errors.md from the sources of truth.
import { writeFileSync, mkdirSync } from "node:fs";
import { configJsonSchema, errorCatalog, jobJsonSchema } from "../packages/core/dist/index.js";

writeFileSync(new URL("../packages/core/schema.json", import.meta.url), JSON.stringify(configJsonSchema(), null, 2) + "\n");
writeFileSync(new URL("../packages/core/job.schema.json", import.meta.url), JSON.stringify(jobJsonSchema(), null, 2) + "\n");
mkdirSync(new URL("../docs/", import.meta.url), { recursive: true });
const rows = Object.entries(errorCatalog).map(([code, e]) => `| \`${code}\` | ${e.title} | ${e.exitCode} | ${e.hint({}).replace(/\|/g, "\\|").replace(/\n/g, " ")} |`);
writeFileSync(new URL("../docs/errors.md", import.meta.url), `# Error codes\n\nGenerated from \`packages/errors/src/catalog.ts\` by \`pnpm schema\`. Codes are stable: never renamed or reused.\nExit codes: 78 configuration, 130 cancelled (not an error code: an AbortError), 1 anything else.\n\n| code | title | exit | hint |\n|---|---|---|---|\n${rows.join("\n")}\n`);
// The configuration reference: every key of tile_compile.yaml with its type, default and description.
const typeOf = (n) => n.enum ? n.enum.map((v) => `\`${v}\``).join(" | ") : n.anyOf ? n.anyOf.map(typeOf).join(" or ") : n.const !== undefined ? `\`${n.const}\`` : n.type === "array" ? (n.prefixItems ? `[${n.prefixItems.map(typeOf).join(", ")}]` : `${typeOf(n.items ?? {})}[]`) : (n.type ?? "any");
const cell = (t) => String(t).replace(/\|/g, "\\|").replace(/\n/g, " ");
const keys = [];
const walk = (node, path) => {
  for (const [k, v] of Object.entries(node.properties ?? {})) {
    if (k.startsWith("$")) continue;
    const p = path ? `${path}.${k}` : k;
    const isObject = v.type === "object" && v.properties;
    keys.push(`| \`${p}\` | ${isObject ? "section" : cell(typeOf(v))} | ${!isObject && v.default !== undefined ? `\`${cell(JSON.stringify(v.default))}\`` : ""} | ${cell(v.description ?? "")} |`);
    if (isObject) walk(v, p);
  }
};
walk(configJsonSchema(), "");
writeFileSync(new URL("../docs/configuration.md", import.meta.url), `# tile_compile.yaml reference\n\nGenerated from the zod schema (\`packages/core/src/config/schema.ts\`) by \`pnpm schema\`; the same schema validates every\nrun and is published as \`@tile-compile/core/schema.json\` for editor completion. Unknown keys are errors.\n\n| key | type | default | meaning |\n|---|---|---|---|\n${keys.join("\n")}\n`);
console.log("wrote packages/core/schema.json, packages/core/job.schema.json, docs/errors.md and docs/configuration.md");
