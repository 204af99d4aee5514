import { join } from "node:path";
import { describe, expect, it } from "vitest";

describe("shipped examples and schema", () => {
  it("every example job in examples/jobs passes the job schema; job.schema.json is current", async () => {
    const { readFileSync, readdirSync: ls } = await import("node:fs");
    const { parse } = await import("yaml");
    const { jobSchema, jobJsonSchema } = await import("./schema.js");
    const dir = new URL("../../../../examples/jobs/", import.meta.url).pathname;
    const files = ls(dir).sort();
    expect(files).toEqual(["M42_LRGB.json", "M42_LRGB_HDR.json", "NGC6888_HOO.yaml", "NGC7000_SHO.yaml"]);
    for (const f of files) {
      const text = readFileSync(join(dir, f), "utf8");
      const r = jobSchema.safeParse(f.endsWith(".json") ? JSON.parse(text) : parse(text));
      expect(r.success, `${f}: ${r.success ? "" : JSON.stringify(r.error.issues)}`).toBe(true);
    }
    const shipped = JSON.parse(readFileSync(new URL("../../job.schema.json", import.meta.url), "utf8"));
    expect(shipped).toEqual(jobJsonSchema());
  });
});
