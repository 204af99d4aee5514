/**
 * docs/configuration.md: every key of tile_compile.yaml with its type, default and description, generated
 * from the JSON Schema (itself generated from the zod schema) by `pnpm schema`; a test keeps it current.
 */
import { configJsonSchema } from "./schema.js";

interface Node {
  type?: string;
  enum?: unknown[];
  anyOf?: Node[];
  const?: unknown;
  items?: Node;
  prefixItems?: Node[];
  properties?: Record<string, Node>;
  default?: unknown;
  description?: string;
}

const typeOf = (n: Node): string =>
  n.enum
    ? n.enum.map((v) => `\`${String(v)}\``).join(" | ")
    : n.anyOf
      ? n.anyOf.map(typeOf).join(" or ")
      : n.const !== undefined
        ? `\`${String(n.const)}\``
        : n.type === "array"
          ? n.prefixItems
            ? `[${n.prefixItems.map(typeOf).join(", ")}]`
            : `${typeOf(n.items ?? {})}[]`
          : (n.type ?? "any");
const cell = (t: string) => t.replace(/\|/g, "\\|").replace(/\n/g, " ");

export function configReferenceMarkdown(): string {
  const rows: string[] = [];
  const walk = (node: Node, path: string) => {
    for (const [k, v] of Object.entries(node.properties ?? {})) {
      if (k.startsWith("$")) continue;
      const p = path ? `${path}.${k}` : k;
      const section = v.type === "object" && v.properties !== undefined;
      rows.push(
        `| \`${p}\` | ${section ? "section" : cell(typeOf(v))} | ${!section && v.default !== undefined ? `\`${cell(JSON.stringify(v.default))}\`` : ""} | ${cell(v.description ?? "")} |`,
      );
      if (section) walk(v, p);
    }
  };
  walk(configJsonSchema() as Node, "");
  return `# tile_compile.yaml reference

Generated from the zod schema (\`packages/core/src/config/schema.ts\`) by \`pnpm schema\`; the same schema validates every
run and is published as \`@tile-compile/core/schema.json\` for editor completion. Unknown keys are errors.

| key | type | default | meaning |
|---|---|---|---|
${rows.join("\n")}
`;
}
