/**
 * wcs_anchor against the real tools: astrometry.net's wcs-xy2rd / wcs-rd2xy as the oracle of the WCS
 * maths, solve-field on the shared M 94 frames and on synthetic frames rendered from Tycho-2 catalogue
 * stars with a known WCS. Skipped with one printed line when astrometry.net is not installed (CI installs
 * it: apt-get install astrometry.net astrometry-data-tycho2-08-littleendian astrometry-data-tycho2-09-littleendian).
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { applyTransform, FitsFile, seededRandom, writeFitsImage, FitsHeader, type EngineContext } from "@tile-compile/core";
import { registerRelative } from "@tile-compile/engine-native";
import { registerWcsAnchor, skyHomography } from "./anchor.js";
import { solveField, solveFieldAvailable } from "./solve.js";
import { Wcs } from "./wcs.js";

const have = solveFieldAvailable() && existsSync("/usr/share/astrometry/index-tycho2-08.littleendian.fits");
if (!have)
  console.log(
    "SKIP wcs_anchor tests: astrometry.net not installed — apt-get install astrometry.net astrometry-data-tycho2-08-littleendian astrometry-data-tycho2-09-littleendian",
  );
const seestar = ["/work/shared/data/seestar", new URL("../../../../shared/data/seestar", import.meta.url).pathname].find((p) =>
  existsSync(p),
);
const m94 = seestar
  ? readdirSync(join(seestar, "M94", "2025_03_27"))
      .filter((f) => f.endsWith(".fit"))
      .sort()
      .map((f) => join(seestar!, "M94", "2025_03_27", f))
  : [];

function ctx(): EngineContext {
  return {
    signal: new AbortController().signal,
    logger: { debug() {}, info() {}, warn() {}, error() {} } as never,
    progress() {},
    workdir: mkdtempSync(join(tmpdir(), "tc-wcs-work-")),
    options: {},
    runtime: {} as never,
  };
}

describe("WCS maths (no astrometry.net needed)", () => {
  it("TAN round trip pixel → sky → pixel within 1e-9 px, CD and CDELT/CROTA2 forms agree", () => {
    const h = new FitsHeader();
    for (const [k, v] of Object.entries({
      CTYPE1: "RA---TAN",
      CTYPE2: "DEC--TAN",
      CRPIX1: 512.5,
      CRPIX2: 400.25,
      CRVAL1: 189.9,
      CRVAL2: 62.3,
      CDELT1: -0.001,
      CDELT2: 0.001,
      CROTA2: 33,
    }))
      h.set(k, v);
    const a = Wcs.fromHeader(h)!;
    const rho = (33 * Math.PI) / 180;
    const b = new Wcs({
      crpix: [512.5, 400.25],
      crval: [189.9, 62.3],
      cd: [-0.001 * Math.cos(rho), -0.001 * Math.sin(rho), -0.001 * Math.sin(rho), 0.001 * Math.cos(rho)],
    });
    for (const [x, y] of [
      [0, 0],
      [1023, 799],
      [300.3, 700.7],
    ] as const) {
      const [ra, dec] = a.pixelToSky(x, y);
      const [u, v] = a.skyToPixel(ra, dec);
      expect(Math.hypot(u - x, v - y)).toBeLessThan(1e-9);
      const [rb, db] = b.pixelToSky(x, y);
      expect(Math.hypot((rb - ra) * Math.cos((dec * Math.PI) / 180), db - dec) * 3600).toBeLessThan(1e-7);
    }
    expect(a.scaleArcsec).toBeCloseTo(3.6, 9);
  });
});

describe.runIf(have && m94.length > 0)("wcs_anchor with astrometry.net", () => {
  let solved: string;

  it(
    "plate-solves a shared M 94 frame at 2.37–2.38″/px; our WCS matches wcs-xy2rd / wcs-rd2xy to 1e-3 px (SIP order 2 with AP/BP)",
    { timeout: 120_000 },
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "tc-solve-"));
      const img = join(dir, "frame.fits");
      // Solve the green plane (as the engine does) with SIP, to exercise the distortion terms.
      const { readFitsImage } = await import("@tile-compile/core");
      const { loadRecon } = await import("@tile-compile/recon-native");
      const raw = await readFitsImage(m94[0]!);
      const g = await loadRecon().debayer({ data: raw.data, width: raw.width, height: raw.height }, { pattern: "GRBG" });
      await writeFitsImage(img, { width: raw.width, height: raw.height, data: g.green });
      const wcs = await solveField(img, dir, { ra: 193.04, dec: 40.97, scaleArcsec: 2.39 }, { sipOrder: 2 });
      solved = join(dir, "solution.wcs");
      expect(wcs.scaleArcsec).toBeGreaterThanOrEqual(2.37);
      expect(wcs.scaleArcsec).toBeLessThanOrEqual(2.38);
      expect(wcs.sip?.ap).toBeDefined();
      const scaleDeg = wcs.scaleArcsec / 3600;
      const r = seededRandom(3);
      for (let k = 0; k < 12; k++) {
        const X = 1 + r() * 1079,
          Y = 1 + r() * 1919; // FITS 1-based pixel coordinates
        const out = execFileSync("wcs-xy2rd", ["-w", solved, "-x", String(X), "-y", String(Y)], { encoding: "utf8" });
        const m = out.match(/RA,Dec \(([-\d.]+), ([-\d.]+)\)/)!;
        const [ra, dec] = wcs.pixelToSky(X - 1, Y - 1);
        const errPx = Math.hypot((ra - Number(m[1])) * Math.cos((dec * Math.PI) / 180), dec - Number(m[2])) / scaleDeg;
        expect(errPx).toBeLessThan(1e-3);
        const back = execFileSync("wcs-rd2xy", ["-w", solved, "-r", m[1]!, "-d", m[2]!], { encoding: "utf8" }).match(
          /pixel \(([-\d.]+), ([-\d.]+)\)/,
        )!;
        const [px, py] = wcs.skyToPixel(Number(m[1]), Number(m[2]));
        expect(Math.hypot(px + 1 - Number(back[1]), py + 1 - Number(back[2]))).toBeLessThan(1e-3);
      }
    },
  );

  it("registers all 16 M 94 frames with both engines; they agree to ≤ 0.3 px across the field", { timeout: 300_000 }, async () => {
    const out = mkdtempSync(join(tmpdir(), "tc-m94-wcs-"));
    const frames = m94.map((path) => ({ path }));
    const w = await registerWcsAnchor(
      { frames, reference: "auto", outputDir: join(out, "wcs"), filenamePattern: "w_{index:05d}.fit", options: {}, history: [] },
      ctx(),
    );
    expect(w.frames.filter((f) => f.error)).toEqual([]);
    const rel = await registerRelative(
      { frames, reference: w.reference, outputDir: join(out, "rel"), filenamePattern: "r_{index:05d}.fit", options: {}, history: [] },
      ctx(),
    );
    expect(rel.frames.filter((f) => f.error)).toEqual([]);
    let worst = 0;
    for (let i = 0; i < frames.length; i++) {
      for (let y = 0; y <= 1919; y += 1919 / 6)
        for (let x = 0; x <= 1079; x += 1079 / 4) {
          const a = applyTransform(w.frames[i]!.matrix!, { x, y }),
            b = applyTransform(rel.frames[i]!.matrix!, { x, y });
          worst = Math.max(worst, Math.hypot(a.x - b.x, a.y - b.y));
        }
    }
    console.log(`M 94: relative vs wcs_anchor, largest disagreement over the field ${worst.toFixed(3)} px`);
    expect(worst, `largest disagreement ${worst.toFixed(3)} px`).toBeLessThanOrEqual(0.3);
    // The solutions are cached next to the run, never in the inputs; a second run reuses them.
    expect(readdirSync(join(out, "wcs", "wcs")).filter((f) => f.endsWith(".wcs"))).toHaveLength(16);
    const t = performance.now();
    const again = await registerWcsAnchor(
      {
        frames: [...frames.slice(0, 2), { path: w.reference }],
        reference: w.reference,
        outputDir: join(out, "wcs"),
        filenamePattern: "w_{index:05d}.fit",
        options: {},
        history: [],
      },
      ctx(),
    );
    expect(again.frames.filter((f) => f.error)).toEqual([]);
    expect(performance.now() - t).toBeLessThan(15_000);
  });

  it(
    "synthetic Tycho-2 fields with known shifts, rotations (incl. 180°) and 0.4 % scale: ≤ 0.1 px RMS; blank sky, another field and a missing solve-field are per-frame errors",
    { timeout: 300_000 },
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "tc-wcs-syn-"));
      const cat = join(dir, "cat.fits");
      execFileSync("query-starkd", [
        "-r",
        "300.0",
        "-d",
        "35.0",
        "-R",
        "0.9",
        "-T",
        "-o",
        cat,
        "/usr/share/astrometry/index-tycho2-08.littleendian.fits",
      ]);
      const stars = await readCatalog(cat);
      expect(stars.length).toBeGreaterThan(50);
      const W = 1024,
        H = 1024,
        scale = 3.6 / 3600;
      const wcsOf = (rotDeg: number, dx: number, dy: number, zoom = 1) => {
        const t = (rotDeg * Math.PI) / 180,
          sc = scale / zoom;
        return new Wcs({
          crpix: [512.5 + dx, 512.5 + dy],
          crval: [300, 35],
          cd: [-sc * Math.cos(t), sc * Math.sin(t), sc * Math.sin(t), sc * Math.cos(t)],
        });
      };
      const truths = [wcsOf(12, 0, 0), wcsOf(12.4, 15.3, -8.7), wcsOf(192, -6.1, 4.4), wcsOf(11.8, 3.2, 2.1, 1.004)];
      const files: string[] = [];
      for (const [k, wcs] of truths.entries()) {
        const r = seededRandom(50 + k);
        const g = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
        const data = new Float32Array(W * H).map(() => 800 + 8 * g());
        const put = (x0: number, y0: number, flux: number) => {
          for (let y = Math.max(0, Math.floor(y0) - 7); y < Math.min(H, Math.floor(y0) + 8); y++)
            for (let x = Math.max(0, Math.floor(x0) - 7); x < Math.min(W, Math.floor(x0) + 8); x++) {
              data[y * W + x] = data[y * W + x]! + (flux / (2 * Math.PI * 1.96)) * Math.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * 1.96));
            }
        };
        for (const s of stars) {
          const [x, y] = wcs.skyToPixel(s.ra, s.dec);
          if (x > -10 && y > -10 && x < W + 10 && y < H + 10) put(x, y, 4e6 * 10 ** (-0.4 * (s.mag - 6)));
        }
        const fr = seededRandom(99);
        for (let i = 0; i < 800; i++) {
          const [x, y] = wcs.skyToPixel(299.4 + fr() * 1.2, 34.5 + fr());
          put(x, y, 3000 + fr() * 20000);
        }
        const header = new FitsHeader();
        header.set("RA", 300.05).set("DEC", 35.02).set("FOCALLEN", 1000).set("XPIXSZ", 17.45);
        const f = join(dir, `syn_${k}.fit`);
        await writeFitsImage(f, { width: W, height: H, data }, { header });
        files.push(f);
      }
      // A frame of another field (catalogue stars around RA 310°): it solves, but not where the anchor is.
      const other = join(dir, "other_field.fit");
      {
        const cat2 = join(dir, "cat2.fits");
        execFileSync("query-starkd", [
          "-r",
          "310.0",
          "-d",
          "40.0",
          "-R",
          "0.9",
          "-T",
          "-o",
          cat2,
          "/usr/share/astrometry/index-tycho2-08.littleendian.fits",
        ]);
        const w2 = new Wcs({ crpix: [512.5, 512.5], crval: [310, 40], cd: [-scale, 0, 0, scale] });
        const data = new Float32Array(W * H).fill(800);
        for (const s of await readCatalog(cat2)) {
          const [x0, y0] = w2.skyToPixel(s.ra, s.dec);
          for (let y = Math.max(0, Math.floor(y0) - 7); y < Math.min(H, Math.floor(y0) + 8); y++)
            for (let x = Math.max(0, Math.floor(x0) - 7); x < Math.min(W, Math.floor(x0) + 8); x++) {
              data[y * W + x] =
                data[y * W + x]! +
                ((4e6 * 10 ** (-0.4 * (s.mag - 6))) / (2 * Math.PI * 1.96)) * Math.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * 1.96));
            }
        }
        const hh = new FitsHeader();
        hh.set("RA", 310).set("DEC", 40).set("FOCALLEN", 1000).set("XPIXSZ", 17.45);
        await writeFitsImage(other, { width: W, height: H, data }, { header: hh });
      }
      const blank = join(dir, "blank.fit");
      await writeFitsImage(blank, { width: W, height: H, data: new Float32Array(W * H).map((_, i) => 800 + ((i * 7919) % 17)) });
      const res = await registerWcsAnchor(
        {
          frames: [...files, blank, other].map((path) => ({ path })),
          reference: 0,
          outputDir: join(dir, "out"),
          filenamePattern: "w_{index:05d}.fit",
          options: {},
          history: [],
        },
        ctx(),
      );
      expect(res.frames[4]!.error).toMatch(/could not solve/);
      expect(res.frames[5]!.error).toMatch(/do not overlap|not a homography/);
      for (let k = 1; k < 4; k++) {
        const truth = skyHomography(truths[k]!, truths[0]!, W, H)!;
        let sq = 0,
          n = 0;
        for (let y = 0; y < H; y += 64)
          for (let x = 0; x < W; x += 64) {
            const a = applyTransform(res.frames[k]!.matrix!, { x, y }),
              b = applyTransform(truth.matrix, { x, y });
            sq += (a.x - b.x) ** 2 + (a.y - b.y) ** 2;
            n++;
          }
        console.log(`synthetic Tycho-2 frame ${k}: ${Math.sqrt(sq / n).toFixed(4)} px RMS against the true transform`);
        expect(Math.sqrt(sq / n), `frame ${k}`).toBeLessThanOrEqual(0.1);
      }
      // Without solve-field on PATH: a frame that needs a plate solve gets a clear per-frame error naming
      // the packages; a frame whose header carries a WCS is still registered.
      const withWcs = join(dir, "with_wcs.fit");
      const hdr = new FitsHeader();
      const t0 = truths[0]!;
      hdr
        .set("CTYPE1", "RA---TAN")
        .set("CTYPE2", "DEC--TAN")
        .set("CRPIX1", t0.crpix[0])
        .set("CRPIX2", t0.crpix[1])
        .set("CRVAL1", t0.crval[0])
        .set("CRVAL2", t0.crval[1]);
      hdr.set("CD1_1", t0.cd[0]).set("CD1_2", t0.cd[1]).set("CD2_1", t0.cd[2]).set("CD2_2", t0.cd[3]);
      const { readFitsImage } = await import("@tile-compile/core");
      await writeFitsImage(withWcs, { width: W, height: H, data: (await readFitsImage(files[0]!)).data }, { header: hdr });
      const savedPath = process.env.PATH;
      process.env.PATH = "/nonexistent";
      try {
        const r2 = await registerWcsAnchor(
          {
            frames: [{ path: withWcs }, { path: files[1]! }],
            reference: 0,
            outputDir: join(dir, "out-nosolver"),
            filenamePattern: "w_{index:05d}.fit",
            options: {},
            history: [],
          },
          ctx(),
        );
        expect(r2.frames[0]!.error).toBeUndefined();
        expect(r2.frames[1]!.error).toMatch(/solve-field .*not installed.*apt-get install astrometry\.net/);
      } finally {
        process.env.PATH = savedPath;
      }
    },
  );
});

/** RA, DEC, MAG of the binary table query-starkd writes (big-endian doubles/floats). */
async function readCatalog(path: string): Promise<{ ra: number; dec: number; mag: number }[]> {
  const f = await FitsFile.open(path);
  try {
    const hdu = (await f.hdu(1))!;
    const h = hdu.header;
    const rowBytes = h.getNumber("NAXIS1")!,
      rows = h.getNumber("NAXIS2")!,
      nf = h.getNumber("TFIELDS")!;
    const cols: { name: string; off: number; type: string }[] = [];
    let off = 0;
    for (let i = 1; i <= nf; i++) {
      const form = String(h.get(`TFORM${i}`)).trim();
      const m = form.match(/^(\d*)([A-Z])$/)!;
      const rep = m[1] ? Number(m[1]) : 1;
      const size = { D: 8, E: 4, J: 4, I: 2, K: 8, B: 1, L: 1, A: 1 }[m[2]!]! * rep;
      cols.push({
        name: String(h.get(`TTYPE${i}`))
          .trim()
          .toUpperCase(),
        off,
        type: m[2]!,
      });
      off += size;
    }
    const buf = readFileSync(path).subarray(hdu.dataOffset, hdu.dataOffset + rowBytes * rows);
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const get = (row: number, name: string) => {
      const c = cols.find((cc) => cc.name === name || cc.name.startsWith(name))!;
      return c.type === "D" ? dv.getFloat64(row * rowBytes + c.off) : dv.getFloat32(row * rowBytes + c.off);
    };
    return Array.from({ length: rows }, (_, i) => ({ ra: get(i, "RA"), dec: get(i, "DEC"), mag: get(i, "MAG") }));
  } finally {
    await f.close();
  }
}
