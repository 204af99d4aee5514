/**
 * Nothing silently dropped, nothing overwritten: the file-system findings of the reliability review,
 * each reproduced on a small generated library (packages/test-support/src/library.ts: 96×64 frames,
 * L 8 + R/G/B 4) and run through the CLI as a user runs it.
 *
 * Cases that need root (a tmpfs to fill, another user to drop to) skip with one line when not root.
 */
import { spawn, spawnSync } from "node:child_process";
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import { FitsHeader, readFitsHeader, readFitsImage, writeFitsImage } from "@tile-compile/core";
import { runCli } from "@tile-compile/cli";
import { makeLibrary } from "@tile-compile/test-support/library";

// The `tile-compile` command from the cli package's `bin`, as a user runs it.
const cliPkg = createRequire(import.meta.url).resolve("@tile-compile/cli/package.json");
const CLI = join(dirname(cliPkg), (JSON.parse(readFileSync(cliPkg, "utf8")) as { bin: Record<string, string> }).bin["tile-compile"]!);
const root = process.getuid?.() === 0;
if (!root) console.log("SKIP reliability cases needing root (tmpfs full disk, another user): run the tests as root (CI does)");

function capture() {
  const out: string[] = [],
    err: string[] = [];
  return {
    io: { out: (t: string) => void out.push(t), err: (t: string) => void err.push(t), interactive: false },
    out,
    err,
    text: () => [...out, ...err].join("\n"),
  };
}
async function library(): Promise<string> {
  const base = mkdtempSync(join(tmpdir(), "tc-rel-"));
  await makeLibrary(base);
  return base;
}
function job(base: string, name: string, body: Record<string, unknown>): string {
  const p = join(base, "jobs", `${name}.json`);
  writeFileSync(
    p,
    JSON.stringify({ name, type: "MONO", calibration: { bias: "2024_01_15", darks: "2024_01_15", flats: "2024_01_20" }, ...body }),
  );
  return p;
}
const ncombine = async (p: string) => (await readFitsHeader(p)).header.getNumber("NCOMBINE");
/** Files that look finished but were left half-written (temporary names), anywhere under `dir`. */
function leftovers(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(tmp|partial)$/.test(e.name)) out.push(p);
    }
  };
  if (existsSync(dir)) walk(dir);
  return out;
}

describe("reliability", () => {
  it.skipIf(!root)(
    "a full disk during registration fails the stage with TC_IO, checkpoints nothing as finished; after freeing space the re-run stacks every frame",
    async () => {
      const base = await library();
      const file = job(base, "full", { lights: { L: ["M42/2024_01_15/L180", "M42/2024_01_20/L180"] }, output: "M42/processed" });
      const reg = join(base, "M42/processed/registered");
      mkdirSync(reg, { recursive: true });
      // 64 KiB: the calibrated frames fit elsewhere, the registered ones (24 KiB each) do not.
      expect(spawnSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", reg]).status).toBe(0);
      try {
        const c = capture();
        const code = await runCli(["run", file, "--stage", "stack"], { io: c.io, cwd: base });
        expect(code).toBe(1);
        expect(c.text()).toMatch(/\[TC_IO\]/);
        expect(c.text()).toMatch(/No space left on device|ENOSPC/);
        expect(c.text()).not.toMatch(/not registered/);
        const state = JSON.parse(readFileSync(join(base, "M42/processed/.tile-compile/checkpoints.json"), "utf8")) as Record<
          string,
          unknown
        >;
        expect(Object.keys(state).filter((k) => k.startsWith("register"))).toEqual([]);
        expect(spawnSync("mount", ["-o", "remount,size=16m", reg]).status).toBe(0);
        const again = capture();
        expect(await runCli(["run", file, "--stage", "stack"], { io: again.io, cwd: base }), again.text()).toBe(0);
        expect(await ncombine(join(base, "M42/processed/stack_L_180s.fit"))).toBe(8);
        expect(leftovers(join(base, "M42/processed"))).toEqual([]);
      } finally {
        spawnSync("umount", [reg]);
      }
    },
    120_000,
  );

  it("two folders of one night with the same file names both count; the same folder listed twice, through a symlink or as a copy is used once with a warning", async () => {
    const base = await library();
    // A second L180 folder of the same night (numbering restarted after a meridian flip): same names, other pixels.
    const late = join(base, "M42/2024_01_15/L180_late");
    mkdirSync(late);
    for (const f of readdirSync(join(base, "M42/2024_01_15/L180"))) {
      const img = await readFitsImage(join(base, "M42/2024_01_15/L180", f));
      await writeFitsImage(
        join(late, f),
        { width: img.width, height: img.height, data: img.data.map((v) => v + 3) },
        { bitpix: 16, header: img.header.withoutStructure() },
      );
    }
    symlinkSync(join(base, "M42/2024_01_15/L180"), join(base, "M42/2024_01_15/L180_link"));
    cpSync(join(base, "M42/2024_01_20/L180"), join(base, "M42/2024_01_20/L180_copy"), { recursive: true });
    const file = job(base, "collide", {
      lights: {
        L: [
          "M42/2024_01_15/L180",
          "M42/2024_01_15/L180_late",
          "M42/2024_01_15/L180",
          "M42/2024_01_15/L180_link",
          "M42/2024_01_20/L180",
          "M42/2024_01_20/L180_copy",
        ],
      },
      output: "M42/processed",
    });
    const c = capture();
    expect(await runCli(["run", file, "--stage", "stack"], { io: c.io, cwd: base }), c.text()).toBe(0);
    // 4 (L180) + 4 (L180_late) + 4 (second night); the repeat, the symlink and the copy once each.
    expect(await ncombine(join(base, "M42/processed/stack_L_180s.fit"))).toBe(12);
    const text = c.text();
    expect(text).toMatch(/used once:/);
    expect(text).toMatch(/L180_link\/light_L_0\.fit — the same file as M42\/2024_01_15\/L180\/light_L_0\.fit/);
    expect(text).toMatch(/L180_copy\/light_L_0\.fit is an identical copy of M42\/2024_01_20\/L180\/light_L_0\.fit: used once/);
    const cal = join(base, "M42/processed/calibrated/L_180s/2024_01_15");
    expect(readdirSync(cal).sort()).toEqual(["M42_2024_01_15_L180", "M42_2024_01_15_L180_late"]);
  }, 120_000);

  it("non-ASCII job and frame names write valid FITS masters (fitsverify when installed); an unreadable master is rebuilt, never 'up to date'", async () => {
    const base = await library();
    const bias = join(base, "calibration/raw/biases/2024_01_15");
    renameSync(join(bias, "bias_0.fit"), join(bias, "Bias_Frühling_001.fit"));
    const file = job(base, "M42_Orion_Nébuleuse", { lights: { L: "M42/2024_01_15/L180" }, output: "M42/processed_é" });
    const c = capture();
    expect(await runCli(["run", file, "--stage", "calibrate"], { io: c.io, cwd: base }), c.text()).toBe(0);
    const master = join(base, "calibration/masters/biases/bias_2024_01_15.fit");
    const h = await readFitsHeader(master);
    expect(h.header.commentary("HISTORY").join("\n")).toMatch(/Bias_Fruhling_001\.fit/);
    const fitsverify = spawnSync("fitsverify", ["-q", master]);
    if (fitsverify.error) console.log("SKIP fitsverify part: not installed (apt-get install fitsverify)");
    else expect(fitsverify.stdout.toString(), fitsverify.stdout.toString()).toMatch(/OK/);
    // A master damaged by an older version (a non-ASCII byte in its header): stale, rebuilt.
    const bytes = readFileSync(master);
    bytes[80 * 12 + 20] = 0xe9;
    writeFileSync(master, bytes);
    const v = capture();
    expect(await runCli(["validate", file], { io: v.io, cwd: base })).toBe(0);
    expect(v.text()).toMatch(
      /rebuild +calibration\/masters\/biases\/bias_2024_01_15\.fit — unreadable \(its header holds a non-ASCII byte \(0xe9\)/,
    );
  }, 120_000);

  it("dangling and looping symlinks among the lights are coded problems in validate and run; scan lists a looping folder once", async () => {
    const base = await library();
    const L = join(base, "M42/2024_01_15/L180");
    symlinkSync(join(base, "nowhere.fit"), join(L, "gone.fit"));
    symlinkSync(join(L, "loop_b"), join(L, "loop_a"));
    symlinkSync(join(L, "loop_a"), join(L, "loop_b"));
    const file = job(base, "links", { lights: { L: "M42/2024_01_15/L180" } });
    for (const args of [
      ["validate", file],
      ["run", file, "--stage", "calibrate"],
    ]) {
      const c = capture();
      expect(await runCli(args, { io: c.io, cwd: base })).toBe(78);
      const t = c.text();
      expect(t).toMatch(/gone\.fit: is a symbolic link to nothing/);
      expect(t).toMatch(/loop_a \[lights\.L\]: cannot be read \(a symbolic link that loops\)/);
      expect(t).not.toMatch(/Unexpected error/);
    }
    // scan: a folder link back up the tree is walked once.
    symlinkSync(join(base, "M42"), join(base, "M42/2024_01_15/up"));
    const s = capture();
    expect(await runCli(["scan", join(base, "M42"), "--json"], { io: s.io, cwd: base })).toBe(0);
    const doc = JSON.parse(s.out.join("")) as { frames: unknown[]; bad: { path: string; reason: string }[] };
    expect(doc.frames.length).toBe(32);
    expect(doc.bad.map((b) => b.reason).join("\n")).toMatch(/a symbolic link to nothing/);
  }, 60_000);

  it("a deleted transforms.json: the re-run registers again instead of failing", async () => {
    const base = await library();
    const file = job(base, "tf", { lights: { L: "M42/2024_01_15/L180" } });
    expect(await runCli(["run", file, "--stage", "stack"], { io: capture().io, cwd: base })).toBe(0);
    rmSync(join(base, "M42/processed/registered/L_180s/transforms.json"));
    const c = capture();
    expect(await runCli(["run", file, "--stage", "stack"], { io: c.io, cwd: base }), c.text()).toBe(0);
    expect(existsSync(join(base, "M42/processed/registered/L_180s/transforms.json"))).toBe(true);
  }, 60_000);

  it("an output folder under a symlinked parent that leads outside the base is refused on every run, created or not", async () => {
    const base = await library();
    const elsewhere = mkdtempSync(join(tmpdir(), "tc-elsewhere-"));
    symlinkSync(elsewhere, join(base, "M42/out"));
    const file = job(base, "escape", { lights: { L: "M42/2024_01_15/L180" }, output: "M42/out/processed" });
    for (let k = 0; k < 2; k++) {
      const c = capture();
      expect(await runCli(["validate", file], { io: c.io, cwd: base })).toBe(78);
      expect(c.text()).toMatch(/\[output\]: M42\/out\/processed leads outside the base directory/);
      mkdirSync(join(elsewhere, "processed"), { recursive: true }); // the second time it exists
    }
  }, 60_000);

  it("a YAML alias bomb in tile_compile.yaml is a configuration error (exit 78); threads beyond 1024 are refused", async () => {
    const base = await library();
    const file = job(base, "bomb", { lights: { L: "M42/2024_01_15/L180" } });
    const levels = ["a: &a [x, x, x, x, x, x, x, x, x]"];
    for (let k = 0; k < 9; k++)
      levels.push(
        `${String.fromCharCode(98 + k)}: &${String.fromCharCode(98 + k)} [${Array(9)
          .fill(`*${String.fromCharCode(97 + k)}`)
          .join(", ")}]`,
      );
    writeFileSync(join(base, "tile_compile.yaml"), `${levels.join("\n")}\n`);
    const c = capture();
    expect(await runCli(["validate", file], { io: c.io, cwd: base })).toBe(78);
    expect(c.text()).toMatch(/TC_CONFIG_INVALID/);
    writeFileSync(join(base, "tile_compile.yaml"), "runtime: { threads: 1000000000 }\n");
    const t = capture();
    expect(await runCli(["validate", file], { io: t.io, cwd: base })).toBe(78);
    expect(t.text()).toMatch(/runtime\.threads.*at most 1024/);
  }, 60_000);

  it("runtime.stage_timeout_seconds stops a run with TC_STAGE_TIMEOUT (exit 1, not 'Cancelled'), leaving nothing half-written", async () => {
    const base = await library();
    const file = job(base, "slow", { lights: { L: ["M42/2024_01_15/L180", "M42/2024_01_20/L180"] } });
    writeFileSync(join(base, "tile_compile.yaml"), "runtime: { stage_timeout_seconds: 0.001 }\n");
    const c = capture();
    expect(await runCli(["run", file, "--stage", "calibrate"], { io: c.io, cwd: base })).toBe(1);
    expect(c.text()).toMatch(/\[TC_STAGE_TIMEOUT\].*runtime\.stage_timeout_seconds \(0\.001 s\)/s);
    expect(c.text()).not.toMatch(/Cancelled/);
    expect(leftovers(base)).toEqual([]);
  }, 60_000);

  it("a second run of a job while one runs is refused naming the holder; a dead run's lock and temporary files are taken over and swept", async () => {
    const base = await library();
    const file = job(base, "lock", { lights: { L: "M42/2024_01_15/L180" } });
    const out = join(base, "M42/processed");
    mkdirSync(join(out, ".tile-compile"), { recursive: true });
    const { hostname } = await import("node:os");
    // A live holder: this test process.
    writeFileSync(join(out, ".tile-compile/lock"), `${process.pid}@${hostname()}\n`);
    const c = capture();
    expect(await runCli(["run", file, "--stage", "calibrate"], { io: c.io, cwd: base })).toBe(1);
    expect(c.text()).toMatch(new RegExp(`\\[TC_RUN_LOCKED\\].*locked by ${process.pid}@`, "s"));
    // Two real runs at once: the second is refused while the first holds the folder.
    rmSync(join(out, ".tile-compile/lock"));
    const first = spawn(process.execPath, [CLI, "run", file], { cwd: base, stdio: ["ignore", "pipe", "pipe"] });
    let firstErr = "";
    await new Promise<void>((r) =>
      first.stderr.on("data", (b: Buffer) => {
        firstErr += b.toString();
        if (/building|reused|registration/.test(firstErr)) r();
      }),
    );
    const second = capture();
    expect(await runCli(["run", file], { io: second.io, cwd: base })).toBe(1);
    expect(second.text()).toMatch(new RegExp(`\\[TC_RUN_LOCKED\\].*locked by ${first.pid}@`, "s"));
    expect(await new Promise<number | null>((r) => first.on("exit", (code) => r(code))), firstErr).toBe(0);
    // A dead holder, and what a killed run left half-written.
    const dead = spawnSync(process.execPath, ["-e", "process.exit(0)"]).pid!;
    writeFileSync(join(out, ".tile-compile/lock"), `${dead}@${hostname()}\n`);
    mkdirSync(join(out, "calibrated"), { recursive: true });
    writeFileSync(join(out, "calibrated", `.light_L_0.fit.${dead}.abcd1234.tmp`), "half");
    writeFileSync(join(out, `stack_L_180s.fit.${dead}.partial`), "half");
    const d = capture();
    expect(await runCli(["run", file, "--stage", "calibrate"], { io: d.io, cwd: base }), d.text()).toBe(0);
    expect(d.text()).toMatch(/removed 2 temporary file\(s\) left by interrupted runs/);
    expect(leftovers(out)).toEqual([]);
    expect(existsSync(join(out, ".tile-compile/lock"))).toBe(false);
  }, 60_000);

  it("SIGHUP (the terminal closed) cancels like Ctrl-C: exit 130, nothing half-written; the re-run completes", async () => {
    const base = await library();
    const file = job(base, "hup", { lights: { L: ["M42/2024_01_15/L180", "M42/2024_01_20/L180"] } });
    const child = spawn(process.execPath, [CLI, "run", file], { cwd: base, stdio: ["ignore", "pipe", "pipe"] });
    let err = "";
    child.stderr.on("data", (b: Buffer) => {
      err += b.toString();
      if (/building|registration|calibrat/.test(err) && !child.killed) child.kill("SIGHUP");
    });
    const code = await new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
    expect(code, err).toBe(130);
    expect(err).toMatch(/SIGHUP|Cancelled/);
    expect(leftovers(base)).toEqual([]);
    const c = capture();
    expect(await runCli(["run", file], { io: c.io, cwd: base }), c.text()).toBe(0);
  }, 120_000);

  it.skipIf(!root)(
    "a read-only output folder and a read-only library, as an unprivileged user: coded TC_IO errors; two users' work roots never collide",
    async () => {
      const base = await library();
      chmodSync(tmpdir(), 0o755); // the tests' private temp root: let nobody reach the library (read only)
      chmodSync(base, 0o755);
      spawnSync("chmod", ["-R", "a+rX", base]);
      const file = job(base, "ro", { lights: { L: "M42/2024_01_15/L180" } });
      const asNobody = (args: string[], env: Record<string, string> = {}) =>
        spawnSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, CLI, ...args], {
          cwd: base,
          env: { ...process.env, ...env },
          encoding: "utf8",
        });
      const probe = asNobody(["--version"]);
      if (probe.status !== 0) {
        console.log(`SKIP unprivileged part: cannot run the CLI as nobody (${(probe.stderr || String(probe.error)).split("\n")[0]})`);
        return;
      }
      // The library and output belong to root: nobody may read, not write.
      const r = asNobody(["run", file, "--stage", "calibrate"]);
      expect(r.status, r.stderr).toBe(1);
      expect(r.stderr).toMatch(/\[TC_IO\]/);
      expect(r.stderr).toMatch(
        /(create the output folder|create the run lock|open the event log|mkdir|open) .*(M42\/processed|calibration\/masters).*EACCES/s,
      );
      expect(r.stderr).not.toMatch(/Unexpected error|Unhandled/);
      // Work roots: root's run leaves nothing shared behind that blocks another user's run in the same $TMPDIR.
      const tmp = mkdtempSync(join(tmpdir(), "tc-shared-tmp-"));
      chmodSync(tmp, 0o1777);
      const lights = join(base, "M42/2024_01_15/L180");
      const mine = capture();
      const prev = process.env.TMPDIR;
      process.env.TMPDIR = tmp;
      try {
        expect(await runCli(["stack", lights, "-o", join(tmp, "root_stack.fit")], { io: mine.io, cwd: base }), mine.text()).toBe(0);
      } finally {
        if (prev === undefined) delete process.env.TMPDIR;
        else process.env.TMPDIR = prev;
      }
      const theirs = asNobody(["stack", lights, "-o", join(tmp, "nobody_stack.fit")], { TMPDIR: tmp });
      expect(theirs.status, theirs.stderr).toBe(0);
      void FitsHeader;
    },
    120_000,
  );

  it("misleading messages fixed: an odd-sized first frame blames only itself; an unknown filter name gets the alias hint; a header error names the file once", async () => {
    const base = await library();
    const L = join(base, "M42/2024_01_15/L180");
    const h = new FitsHeader();
    h.set("IMAGETYP", "Light Frame").set("EXPTIME", 180).set("FILTER", "L").set("CCD-TEMP", -10);
    await writeFitsImage(join(L, "a_odd.fit"), { width: 50, height: 40, data: new Float32Array(2000).fill(100) }, { header: h });
    const r = capture();
    expect(await runCli(["register", L, "-o", join(base, "reg"), "--json"], { io: r.io, cwd: base }), r.text()).toBe(0);
    const doc = JSON.parse(r.out.join("")) as { frames: Record<string, { error?: string; output?: string }> };
    expect(
      Object.entries(doc.frames)
        .filter(([, f]) => f.error)
        .map(([name]) => name),
    ).toEqual(["a_odd.fit"]);
    expect(doc.frames["a_odd.fit"]!.error).toMatch(/its size 50×40 differs from the set's 96×64/);
    rmSync(join(L, "a_odd.fit"));
    // A filter written 'Ha 7nm' under the job key H.
    const H = join(base, "M42/2024_01_15/H300");
    const img = await readFitsImage(join(H, readdirSync(H)[0]!));
    img.header.set("FILTER", "Ha 7nm");
    await writeFitsImage(
      join(H, "z_ha7.fit"),
      { width: img.width, height: img.height, data: img.data },
      { bitpix: 16, header: img.header.withoutStructure() },
    );
    writeFileSync(join(H, "broken.fit"), "SIMPLE  =                    T");
    const file = job(base, "msgs", { lights: { H: "M42/2024_01_15/H300" } });
    const v = capture();
    expect(await runCli(["validate", file], { io: v.io, cwd: base })).toBe(78);
    const t = v.text();
    expect(t).toMatch(/header filter "Ha 7nm".*filters: \{ aliases: \{ "Ha 7nm": H \} \}/);
    const line = t.split("\n").find((l) => l.includes("broken.fit"))!;
    expect(line.split(join(H, "broken.fit")).length - 1).toBe(1);
  }, 60_000);
});
