/**
 * Siril scripts from typed commands. Nothing a user wrote is pasted into a script: frames are linked into
 * a private work folder under fixed names (f_00001.fit …) and every path in a script is one we made, so
 * file names with spaces or quotes never reach Siril's parser. The same command list renders in three
 * dialects (engines-on-debian.md §1.3–1.4):
 *
 * | command            | 1.0.x                         | 1.2.x                          | 1.4.x                       |
 * |--------------------|-------------------------------|--------------------------------|-----------------------------|
 * | calibrate lights   | preprocess seq -dark= -flat=  | calibrate seq -dark= -flat=    | calibrate seq …             |
 * | register           | register seq (writes r_)      | register seq -2pass + seqapplyreg | same as 1.2              |
 * | noise weights      | stack … -weighted             | stack … -weight_from_noise     | stack … -weight=noise       |
 */
export type Dialect = "1.0" | "1.2" | "1.4";

/** The stacking vocabulary is core's (config/schema.ts); Siril's script takes the same names. */
export type { RejectionMethod as Rejection, Normalization } from "@tile-compile/core";
import type { RejectionMethod as Rejection, Normalization } from "@tile-compile/core";

export type Command =
  | { op: "requires" }
  | { op: "setext" }
  | { op: "cd"; dir: string }
  | { op: "convert"; name: string; out: string; debayer?: boolean }
  | { op: "setref"; seq: string; index: number }
  | { op: "setfindstar"; sigma: number; roundness: number }
  | {
      op: "register";
      seq: string;
      transform?: "shift" | "similarity" | "affine" | "homography";
      interpolation?: "bilinear" | "bicubic" | "lanczos3";
    }
  | { op: "calibrate"; seq: string; bias?: string; dark?: string; flat?: string; optimizeDark?: boolean; cfa?: boolean }
  | {
      op: "stack";
      seq: string;
      method: "mean" | "median" | "rejection" | "sum";
      rejection?: Rejection;
      sigma?: [number, number];
      normalization?: Normalization;
      weighted?: boolean;
      out: string;
    }
  | { op: "subsky"; seq: string; degree: number }
  | { op: "close" };

const REJ: Record<Rejection, string> = {
  none: "n",
  percentile: "p",
  sigma: "s",
  sigma_median: "m",
  winsorized: "w",
  linear_fit: "l",
  gesdt: "g",
  mad: "a",
};
/** Siril's normalisations (local normalisation is ours only: sirilStack refuses it before a script is written). */
const NORM: Record<Exclude<Normalization, "local">, string> = {
  none: "-nonorm",
  additive: "-norm=add",
  multiplicative: "-norm=mul",
  additive_scaling: "-norm=addscale",
  multiplicative_scaling: "-norm=mulscale",
};

function norm(n: Normalization | undefined): string {
  if (n === "local") throw new Error("internal: local normalisation reached the Siril script");
  return NORM[n ?? "none"];
}

/** Tokens Siril reads as one word: we only ever emit our own paths, which contain none of these. */
function safe(token: string, what: string): string {
  if (!/^[\w./+=-]+$/.test(token)) throw new Error(`internal: ${what} "${token}" is not a safe Siril token`);
  return token;
}

export function render(cmds: readonly Command[], dialect: Dialect): string {
  const lines: string[] = [];
  for (const c of cmds) {
    switch (c.op) {
      case "requires":
        lines.push(`requires ${dialect === "1.0" ? "1.0.0" : dialect === "1.2" ? "1.2.0" : "1.4.0"}`);
        break;
      case "setext":
        lines.push("setext fit");
        break;
      case "cd":
        lines.push(`cd ${safe(c.dir, "folder")}`);
        break;
      case "convert":
        lines.push(`convert ${safe(c.name, "name")}${c.debayer ? " -debayer" : ""} -out=${safe(c.out, "folder")}`);
        break;
      case "setref":
        lines.push(`setref ${safe(c.seq, "sequence")} ${c.index}`);
        break;
      case "setfindstar": {
        if (!(c.sigma > 0 && Number.isFinite(c.sigma)) || !(c.roundness >= 0 && c.roundness <= 1))
          throw new Error(`internal: setfindstar sigma ${c.sigma}, roundness ${c.roundness}`);
        // 1.0 takes both positionally ("Usage: setfindstar sigma roundness"); 1.2+ takes named options.
        lines.push(dialect === "1.0" ? `setfindstar ${c.sigma} ${c.roundness}` : `setfindstar -sigma=${c.sigma} -roundness=${c.roundness}`);
        break;
      }
      case "register": {
        const transf = c.transform ? ` -transf=${c.transform}` : "";
        // 1.0.6 has no choice of kernel (it resamples bilinearly); 1.2+ takes -interp= on seqapplyreg
        // (Siril's "la" is Lanczos-4, the nearest to our Lanczos-3).
        const interp = c.interpolation ? ` -interp=${{ bilinear: "li", bicubic: "cu", lanczos3: "la" }[c.interpolation]}` : "";
        if (dialect === "1.0") lines.push(`register ${safe(c.seq, "sequence")}${transf}`);
        else lines.push(`register ${safe(c.seq, "sequence")} -2pass${transf}`, `seqapplyreg ${safe(c.seq, "sequence")}${interp}`);
        break;
      }
      case "calibrate": {
        const args = [
          c.bias ? `-bias=${safe(c.bias, "master")}` : "",
          c.dark ? `-dark=${safe(c.dark, "master")}` : "",
          c.flat ? `-flat=${safe(c.flat, "master")}` : "",
          c.optimizeDark ? "-opt" : "",
          c.cfa ? "-cfa -equalize_cfa" : "",
          c.dark && dialect !== "1.0" ? "-cc=dark" : "",
        ]
          .filter(Boolean)
          .join(" ");
        lines.push(`${dialect === "1.0" ? "preprocess" : "calibrate"} ${safe(c.seq, "sequence")} ${args}`.trimEnd());
        break;
      }
      case "stack": {
        const seq = safe(c.seq, "sequence");
        if (c.method === "sum") {
          lines.push(`stack ${seq} sum -out=${safe(c.out, "output")}`);
          break;
        }
        if (c.method === "median") {
          lines.push(`stack ${seq} med ${norm(c.normalization)} -out=${safe(c.out, "output")}`);
          break;
        }
        const rej = c.method === "mean" ? "none" : (c.rejection ?? "winsorized");
        if (rej === "mad" && dialect === "1.0") throw new Error("MAD rejection needs Siril 1.2 or later");
        const [lo, hi] = c.sigma ?? [3, 3];
        const weight = c.weighted ? (dialect === "1.0" ? " -weighted" : dialect === "1.2" ? " -weight_from_noise" : " -weight=noise") : "";
        lines.push(
          `stack ${seq} rej ${REJ[rej]}${rej === "none" ? "" : ` ${lo} ${hi}`} ${norm(c.normalization)}${weight} -out=${safe(c.out, "output")}`,
        );
        break;
      }
      case "subsky": {
        if (!(Number.isInteger(c.degree) && c.degree >= 1 && c.degree <= 4))
          throw new Error(`Siril's seqsubsky takes a polynomial degree 1–4, got ${c.degree}`);
        lines.push(`seqsubsky ${safe(c.seq, "sequence")} ${c.degree}`);
        break;
      }
      case "close":
        lines.push("close");
        break;
    }
  }
  return `${lines.join("\n")}\n`;
}

/** `siril-cli --version` output → dialect. */
export function dialectOf(versionText: string): { version: string; dialect: Dialect } | undefined {
  const m = /siril\s+(\d+)\.(\d+)\.(\d+)/i.exec(versionText);
  if (!m) return undefined;
  const [maj, min] = [Number(m[1]), Number(m[2])];
  const dialect: Dialect = maj > 1 || min >= 4 ? "1.4" : min >= 2 ? "1.2" : "1.0";
  return { version: `${m[1]}.${m[2]}.${m[3]}`, dialect };
}
