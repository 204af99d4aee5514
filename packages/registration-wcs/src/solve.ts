/**
 * Plate solving with astrometry.net's `solve-field` (Debian `astrometry.net` with the Tycho-2 index
 * packages 08 and 09, ≈ 0.4–2° fields). Always with a scale range (from FOCALLEN and XPIXSZ) and, when the
 * header has them, a position hint; `--no-remove-lines --uniformize 0` (those Python steps cost ~3 s and
 * are not needed for star fields), and without SIP distortion unless asked for (`sipOrder` ≥ 2).
 * solve-field exits 0 when it fails, so success is the `.wcs` file.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { FitsFile, type FitsHeader } from "@tile-compile/core";
import { Wcs } from "./wcs.js";

export interface SolveHints {
  ra?: number;
  dec?: number;
  /** Expected scale in arcsec/px; the search range is ±15 %. */
  scaleArcsec?: number;
}

const INSTALL = "apt-get install astrometry.net astrometry-data-tycho2-08-littleendian astrometry-data-tycho2-09-littleendian";

function sexagesimal(v: string, hours: boolean): number | undefined {
  const m = v.trim().match(/^([+-]?)(\d+)[:\s]+(\d+)[:\s]+([\d.]+)$/);
  if (!m) return undefined;
  const deg = Number(m[2]) + Number(m[3]) / 60 + Number(m[4]) / 3600;
  return (m[1] === "-" ? -deg : deg) * (hours ? 15 : 1);
}

/** Position and scale hints from the usual capture-software keywords. */
export function hintsFromHeader(h: FitsHeader): SolveHints {
  const hints: SolveHints = {};
  const ra = h.get("RA") ?? h.get("OBJCTRA"),
    dec = h.get("DEC") ?? h.get("OBJCTDEC");
  const raDeg = typeof ra === "number" ? ra : typeof ra === "string" ? sexagesimal(ra, true) : undefined;
  const decDeg = typeof dec === "number" ? dec : typeof dec === "string" ? sexagesimal(dec, false) : undefined;
  if (raDeg !== undefined && decDeg !== undefined && Math.abs(decDeg) <= 90) {
    hints.ra = raDeg;
    hints.dec = decDeg;
  }
  const focal = h.getNumber("FOCALLEN"),
    pix = h.getNumber("XPIXSZ") ?? h.getNumber("PIXSIZE1"),
    bin = h.getNumber("XBINNING") ?? 1;
  if (focal && pix && focal > 0 && pix > 0) hints.scaleArcsec = (206.264806 * pix * bin) / focal;
  return hints;
}

/** Whether `solve-field` is on PATH (checked on every call: cheap, and PATH can change). */
export function solveFieldAvailable(): boolean {
  return (process.env.PATH ?? "").split(":").some((d) => d && existsSync(join(d, "solve-field")));
}

/** Solve `image` (a FITS file) into `dir`; resolves with the WCS or rejects with the reason. */
export async function solveField(
  image: string,
  dir: string,
  hints: SolveHints,
  options: { signal?: AbortSignal; cpulimitSeconds?: number; sipOrder?: number } = {},
): Promise<Wcs> {
  if (!solveFieldAvailable()) throw new Error(`solve-field (astrometry.net) is not installed; install it with: ${INSTALL}`);
  const args = [
    "--no-plots",
    "--overwrite",
    "--no-remove-lines",
    "--uniformize",
    "0",
    "--new-fits",
    "none",
    "--corr",
    "none",
    "--rdls",
    "none",
    "--match",
    "none",
    "--index-xyls",
    "none",
    "--cpulimit",
    String(options.cpulimitSeconds ?? 60),
    "--dir",
    dir,
    "--out",
    "solution",
  ];
  if (hints.scaleArcsec)
    args.push(
      "--scale-units",
      "arcsecperpix",
      "--scale-low",
      (hints.scaleArcsec * 0.85).toFixed(4),
      "--scale-high",
      (hints.scaleArcsec * 1.15).toFixed(4),
    );
  if (hints.ra !== undefined && hints.dec !== undefined)
    args.push("--ra", hints.ra.toFixed(6), "--dec", hints.dec.toFixed(6), "--radius", "3");
  // SIP distortion fitted per frame from a few dozen stars is noisy toward the corners (measured on the
  // M 94 frames: frame-to-frame differences of 0.3–0.7 px); a plain TAN solution is the default.
  const sip = options.sipOrder ?? 0;
  if (sip >= 2) args.push("--tweak-order", String(sip));
  else args.push("--no-tweak");
  args.push(image);
  const log = await new Promise<string>((resolvePromise, reject) => {
    execFile("solve-field", args, { signal: options.signal, maxBuffer: 1 << 24, killSignal: "SIGKILL" }, (err, stdout, stderr) => {
      if (err) {
        if (err.name === "AbortError") reject(err);
        else reject(new Error(`solve-field failed (${err.message.split("\n")[0]}): ${stderr.toString().slice(-400)}`));
      } else resolvePromise(stdout.toString());
    });
  });
  const wcsPath = join(dir, "solution.wcs");
  if (!existsSync(wcsPath)) {
    const tail = log.split("\n").filter(Boolean).slice(-2).join(" / ");
    throw new Error(
      `astrometry.net could not solve the field (${tail || "no solution"}); check the scale hint (FOCALLEN, XPIXSZ) and that the Tycho-2 index 08/09 covers it`,
    );
  }
  const f = await FitsFile.open(wcsPath);
  try {
    const h = (await f.hdu(0))!.header;
    const wcs = Wcs.fromHeader(h);
    if (!wcs) throw new Error("solve-field wrote a .wcs file without a celestial WCS");
    return wcs;
  } finally {
    await f.close();
  }
}
