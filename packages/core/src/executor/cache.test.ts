import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { writeFitsImage } from "@tile-compile/fits";
import { closeCache, OPEN_FILES_MAX, readBand, scratch } from "./cache.js";
import { defineTask } from "./contracts.js";
import { localExecutor } from "./local.js";
import type { TaskContext } from "./contracts.js";

const ctx = (): TaskContext => ({
  signal: new AbortController().signal,
  runId: "t",
  cache: new Map(),
  threads: 1,
  shared: async () => {
    throw new Error("none");
  },
});

describe("readBand", () => {
  it("reads the same rows whether files stay open across bands or are opened per band", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tc-band-"));
    const W = 7,
      H = 9,
      frames: { path: string }[] = [];
    for (let f = 0; f < 6; f++) {
      const path = join(dir, `f${f}.fit`);
      await writeFitsImage(path, {
        width: W,
        height: H,
        channels: 2,
        data: Float32Array.from({ length: 2 * W * H }, (_, i) => 1000 * f + i),
      });
      frames.push({ path });
    }
    const open = ctx(),
      perBand = ctx();
    for (const y0 of [0, 4, 8]) {
      const rows = Math.min(4, H - y0);
      const a = await readBand(open, "k", frames, y0, rows, 1, W),
        b = await readBand(perBand, "k", frames, y0, rows, 1, W, 4);
      frames.forEach((_, f) => {
        expect(Array.from(a[f]!)).toEqual(Array.from({ length: rows * W }, (_, k) => 1000 * f + W * H + y0 * W + k));
        expect(Array.from(b[f]!)).toEqual(Array.from(a[f]!));
      });
    }
    // Six frames under the default limit stay open; over a limit of 4 none is kept.
    expect((open.cache.get("files") as Map<string, unknown>).size).toBe(6);
    expect((perBand.cache.get("files") as Map<string, unknown> | undefined)?.size ?? 0).toBe(0);
    expect(OPEN_FILES_MAX).toBeGreaterThanOrEqual(64);
    await closeCache(open.cache);
    await closeCache(perBand.cache);
  });
});

describe("scratch", () => {
  it("units in flight at once never share a scratch buffer (local executor, concurrency 3)", async () => {
    // Each unit fills its band buffer with its own id, yields to the others, and reads it back: with one
    // buffer per key (as before lanes) the later units overwrote the earlier ones' rows mid-unit.
    const task = defineTask("t.scratch", async (i: { id: number }, c) => {
      const b = scratch(c, "band", 1000);
      b.fill(i.id);
      await new Promise((r) => setTimeout(r, 5));
      return b.every((v) => v === i.id);
    });
    const ex = localExecutor();
    const units = Array.from({ length: 12 }, (_, id) => ({ id: `u${id}`, task, input: { id } }));
    const ok: boolean[] = [];
    for await (const r of ex.run(units, { signal: new AbortController().signal, concurrency: 3 })) ok.push(r);
    expect(ok).toEqual(units.map(() => true));
    await ex.close();
  });
});
