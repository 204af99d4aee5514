import { describe, expect, it } from "vitest";
import { dialectOf, render, type Command } from "./script.js";
import { findstarOf, stageScripts } from "./stages.js";

/** Every stage's script in every dialect, exactly as the engine renders it (workdir /w, reference frame 3). */
const golden: Record<string, string> = {
  "1.4 background": [
    "requires 1.4.0",
    "setext fit",
    "cd /w/input",
    "convert f -out=/w/process",
    "cd /w/process",
    "seqsubsky f_ 2",
    "close",
  ].join("\n"),
  "1.2 background": [
    "requires 1.2.0",
    "setext fit",
    "cd /w/input",
    "convert f -out=/w/process",
    "cd /w/process",
    "seqsubsky f_ 2",
    "close",
  ].join("\n"),
  "1.0 background": [
    "requires 1.0.0",
    "setext fit",
    "cd /w/input",
    "convert f -out=/w/process",
    "cd /w/process",
    "seqsubsky f_ 2",
    "close",
  ].join("\n"),
  "1.0 master bias": [
    "requires 1.0.0",
    "setext fit",
    "cd /w/input",
    "convert f -out=/w/process",
    "cd /w/process",
    "stack f_ rej w 3 3 -nonorm -out=/w/process/master",
    "close",
  ].join("\n"),
  "1.0 master flat": [
    "requires 1.0.0",
    "setext fit",
    "cd /w/input",
    "convert f -out=/w/process",
    "cd /w/process",
    "preprocess f_ -bias=/w/masters/mbias.fit",
    "stack pp_f_ rej w 3 3 -norm=mul -out=/w/process/master",
    "close",
  ].join("\n"),
  "1.0 calibrate lights": [
    "requires 1.0.0",
    "setext fit",
    "cd /w/input",
    "convert f -out=/w/process",
    "cd /w/process",
    "preprocess f_ -dark=/w/masters/dark.fit -flat=/w/masters/flat.fit",
    "close",
  ].join("\n"),
  "1.0 register": [
    "requires 1.0.0",
    "setext fit",
    "cd /w/input",
    "convert f -out=/w/process",
    "cd /w/process",
    "setref f_ 3",
    "register f_ -transf=similarity",
    "close",
  ].join("\n"),
  "1.0 stack": [
    "requires 1.0.0",
    "setext fit",
    "cd /w/input",
    "convert f -out=/w/process",
    "cd /w/process",
    "stack f_ rej w 3 3 -norm=addscale -weighted -out=/w/process/result",
    "close",
  ].join("\n"),
  "1.2 master bias": [
    "requires 1.2.0",
    "setext fit",
    "cd /w/input",
    "convert f -out=/w/process",
    "cd /w/process",
    "stack f_ rej w 3 3 -nonorm -out=/w/process/master",
    "close",
  ].join("\n"),
  "1.2 master flat": [
    "requires 1.2.0",
    "setext fit",
    "cd /w/input",
    "convert f -out=/w/process",
    "cd /w/process",
    "calibrate f_ -bias=/w/masters/mbias.fit",
    "stack pp_f_ rej w 3 3 -norm=mul -out=/w/process/master",
    "close",
  ].join("\n"),
  "1.2 calibrate lights": [
    "requires 1.2.0",
    "setext fit",
    "cd /w/input",
    "convert f -out=/w/process",
    "cd /w/process",
    "calibrate f_ -dark=/w/masters/dark.fit -flat=/w/masters/flat.fit -cc=dark",
    "close",
  ].join("\n"),
  "1.2 register": [
    "requires 1.2.0",
    "setext fit",
    "cd /w/input",
    "convert f -out=/w/process",
    "cd /w/process",
    "setref f_ 3",
    "register f_ -2pass -transf=similarity",
    "seqapplyreg f_ -interp=la",
    "close",
  ].join("\n"),
  "1.2 stack": [
    "requires 1.2.0",
    "setext fit",
    "cd /w/input",
    "convert f -out=/w/process",
    "cd /w/process",
    "stack f_ rej w 3 3 -norm=addscale -weight_from_noise -out=/w/process/result",
    "close",
  ].join("\n"),
  "1.4 master bias": [
    "requires 1.4.0",
    "setext fit",
    "cd /w/input",
    "convert f -out=/w/process",
    "cd /w/process",
    "stack f_ rej w 3 3 -nonorm -out=/w/process/master",
    "close",
  ].join("\n"),
  "1.4 master flat": [
    "requires 1.4.0",
    "setext fit",
    "cd /w/input",
    "convert f -out=/w/process",
    "cd /w/process",
    "calibrate f_ -bias=/w/masters/mbias.fit",
    "stack pp_f_ rej w 3 3 -norm=mul -out=/w/process/master",
    "close",
  ].join("\n"),
  "1.4 calibrate lights": [
    "requires 1.4.0",
    "setext fit",
    "cd /w/input",
    "convert f -out=/w/process",
    "cd /w/process",
    "calibrate f_ -dark=/w/masters/dark.fit -flat=/w/masters/flat.fit -cc=dark",
    "close",
  ].join("\n"),
  "1.4 register": [
    "requires 1.4.0",
    "setext fit",
    "cd /w/input",
    "convert f -out=/w/process",
    "cd /w/process",
    "setref f_ 3",
    "register f_ -2pass -transf=similarity",
    "seqapplyreg f_ -interp=la",
    "close",
  ].join("\n"),
  "1.4 stack": [
    "requires 1.4.0",
    "setext fit",
    "cd /w/input",
    "convert f -out=/w/process",
    "cd /w/process",
    "stack f_ rej w 3 3 -norm=addscale -weight=noise -out=/w/process/result",
    "close",
  ].join("\n"),
};

const pipeline: Command[] = [
  { op: "requires" },
  { op: "setext" },
  { op: "cd", dir: "/tmp/w/input" },
  { op: "convert", name: "light", out: "/tmp/w/process", debayer: true },
  { op: "cd", dir: "/tmp/w/process" },
  { op: "calibrate", seq: "light_", dark: "/tmp/w/masters/dark", flat: "/tmp/w/masters/flat" },
  { op: "setref", seq: "pp_light_", index: 1 },
  { op: "register", seq: "pp_light_" },
  {
    op: "stack",
    seq: "r_pp_light_",
    method: "rejection",
    rejection: "winsorized",
    sigma: [3, 3],
    normalization: "additive_scaling",
    weighted: true,
    out: "/tmp/w/result",
  },
  { op: "close" },
];

describe("Siril script generation (golden text per dialect)", () => {
  it("1.0.x: preprocess, register writing r_, -weighted", () => {
    expect(render(pipeline, "1.0")).toBe(
      [
        "requires 1.0.0",
        "setext fit",
        "cd /tmp/w/input",
        "convert light -debayer -out=/tmp/w/process",
        "cd /tmp/w/process",
        "preprocess light_ -dark=/tmp/w/masters/dark -flat=/tmp/w/masters/flat",
        "setref pp_light_ 1",
        "register pp_light_",
        "stack r_pp_light_ rej w 3 3 -norm=addscale -weighted -out=/tmp/w/result",
        "close",
        "",
      ].join("\n"),
    );
  });
  it("1.2.x: calibrate, register -2pass + seqapplyreg, -weight_from_noise", () => {
    const t = render(pipeline, "1.2").split("\n");
    expect(t[0]).toBe("requires 1.2.0");
    expect(t).toContain("calibrate light_ -dark=/tmp/w/masters/dark -flat=/tmp/w/masters/flat -cc=dark");
    expect(t).toContain("register pp_light_ -2pass");
    expect(t).toContain("seqapplyreg pp_light_");
    expect(t).toContain("stack r_pp_light_ rej w 3 3 -norm=addscale -weight_from_noise -out=/tmp/w/result");
  });
  it("1.4.x: -weight=noise", () => {
    expect(render(pipeline, "1.4")).toMatch(
      /requires 1\.4\.0[\s\S]*stack r_pp_light_ rej w 3 3 -norm=addscale -weight=noise -out=\/tmp\/w\/result/,
    );
  });
  it("other stacks: plain mean, median, sum, MAD only from 1.2", () => {
    expect(render([{ op: "stack", seq: "s_", method: "mean", out: "/o/m" }], "1.0")).toBe("stack s_ rej n -nonorm -out=/o/m\n");
    expect(render([{ op: "stack", seq: "s_", method: "median", normalization: "multiplicative", out: "/o/m" }], "1.0")).toBe(
      "stack s_ med -norm=mul -out=/o/m\n",
    );
    expect(render([{ op: "stack", seq: "s_", method: "sum", out: "/o/s" }], "1.0")).toBe("stack s_ sum -out=/o/s\n");
    expect(() => render([{ op: "stack", seq: "s_", method: "rejection", rejection: "mad", out: "/o/m" }], "1.0")).toThrow(/1\.2/);
    expect(render([{ op: "stack", seq: "s_", method: "rejection", rejection: "mad", sigma: [2.5, 3], out: "/o/m" }], "1.2")).toBe(
      "stack s_ rej a 2.5 3 -nonorm -out=/o/m\n",
    );
  });
  it("refuses anything that is not a safe token (user text never reaches a script)", () => {
    expect(() => render([{ op: "cd", dir: "/tmp/Light M 94" }], "1.0")).toThrow(/not a safe Siril token/);
    expect(() => render([{ op: "stack", seq: "x_", method: "mean", out: "/tmp/a\nquit" }], "1.0")).toThrow(/not a safe/);
  });
  it("parses the version banner", () => {
    expect(dialectOf("siril 1.0.6")).toEqual({ version: "1.0.6", dialect: "1.0" });
    expect(dialectOf("siril 1.2.4")).toEqual({ version: "1.2.4", dialect: "1.2" });
    expect(dialectOf("siril 1.4.0-beta")).toEqual({ version: "1.4.0", dialect: "1.4" });
    expect(dialectOf("nothing")).toBeUndefined();
  });
});

describe("golden scripts of each stage in each dialect", () => {
  const stages = {
    "master bias": stageScripts.master("/w", "bias", false),
    "master flat": stageScripts.master("/w", "flat", true),
    "calibrate lights": stageScripts.calibrate("/w", { dark: "/w/masters/dark.fit", flat: "/w/masters/flat.fit" }, false),
    register: stageScripts.register("/w", 2, false, { transform: "similarity", interpolation: "lanczos3" }),
    background: stageScripts.background("/w", 2),
    stack: stageScripts.stack("/w", "rejection", {
      rejection: "winsorized",
      sigma: [3, 3],
      normalization: "additive_scaling",
      weighting: "noise",
    }),
  };
  for (const d of ["1.0", "1.2", "1.4"] as const) {
    for (const [name, cmds] of Object.entries(stages)) {
      it(`${d} ${name}`, () => expect(render(cmds, d)).toBe(`${golden[`${d} ${name}`]}\n`));
    }
  }
});

describe("engine_options findstar → setfindstar", () => {
  it("renders positionally for 1.0 and with named options for 1.2+, before setref", () => {
    const cmds = stageScripts.register("/w", 0, false, {}, findstarOf({ findstar: { sigma: 2.5 } }));
    expect(render(cmds, "1.0")).toContain("cd /w/process\nsetfindstar 2.5 0.5\nsetref f_ 1\n");
    expect(render(cmds, "1.2")).toContain("setfindstar -sigma=2.5 -roundness=0.5\nsetref f_ 1\n");
    expect(render(stageScripts.register("/w", 0, false, {}, findstarOf({})), "1.0")).not.toContain("setfindstar");
  });
  it("refuses a bad value with the field named", () => {
    expect(() => findstarOf({ findstar: { sigma: 0 } })).toThrow(/findstar\.sigma/);
    expect(() => findstarOf({ findstar: { roundness: 1.5 } })).toThrow(/findstar\.roundness/);
    expect(() => findstarOf({ findstar: { sigmas: 2 } })).toThrow(/unknown key sigmas/);
    expect(() => findstarOf({ findstar: 3 })).toThrow(/expected \{ sigma, roundness \}/);
  });
});
