/**
 * Header dialects: one test per dialect (synthetic headers written as the capture program writes them),
 * then every real frame in ../shared/data/real classified by `scanFrames`.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FitsHeader } from "@tile-compile/fits";
import type { FitsHeaderSummary } from "@tile-compile/fits";
import { normalizeFilter } from "../jobs/filters.js";
import { frameInfoFromHeader, frameTypeFromPath, frameTypeOf, utcDate } from "./metadata.js";
import { scanFrames } from "./scan.js";

/** A header summary from card images as a capture program writes them (80-column cards). */
function summary(path: string, cards: string[]): FitsHeaderSummary {
  const text = cards.map((c) => c.padEnd(80, " ")).join("");
  return {
    path,
    header: FitsHeader.parse(text),
    width: 100,
    height: 80,
    channels: 1,
    bitpix: 16,
    compressed: false,
    bytesRead: 2880,
  } as FitsHeaderSummary;
}

describe("header dialects", () => {
  it("frame type words in any case and spelling", () => {
    const cases: [string, string][] = [
      ["science", "light"],
      ["object", "light"],
      ["Light Frame", "light"],
      ["LIGHT", "light"],
      ["zero", "bias"],
      ["Bias Frame", "bias"],
      ["offset", "bias"],
      ["Dark Frame", "dark"],
      ["dark flat", "darkflat"],
      ["FlatDark", "darkflat"],
      ["Flat Field", "flat"],
      ["sky flat", "flat"],
      ["domeflat", "flat"],
      ["focus", "unknown"],
    ];
    for (const [v, t] of cases) expect(frameTypeOf(v), v).toBe(t);
  });

  it("MaxIm DL / N.I.N.A.: IMAGETYP and FILTER are the standard keywords (no source recorded)", () => {
    const f = frameInfoFromHeader(
      summary("/x/a.fit", [
        "IMAGETYP= 'Light Frame'",
        "FILTER  = 'Red     '",
        "EXPTIME =                180.0",
        "CCD-TEMP=                -10.2",
        "DATE-OBS= '2024-01-15T22:00:01'",
      ]),
    );
    expect(f).toMatchObject({ type: "light", filter: "Red", exposureSeconds: 180, temperatureC: -10.2, dateObs: "2024-01-15T22:00:01" });
    expect(f.sources).toBeUndefined();
    expect(f.notes).toBeUndefined();
  });

  it("Calar Alto CAFOS: filter from INSFLNAM, lower-case IMAGETYP, CCDTEMP = -99 placeholder, CCDBINX", () => {
    const f = frameInfoFromHeader(
      summary("/x/uamA_0023.fits", [
        "IMAGETYP= 'science '",
        "INSFLNAM= 'JohnsonB  '",
        "EXPTIME =                 2.00",
        "CCDTEMP =                -99.0",
        "CCDBINX =                    2",
        "CCDBINY =                    2",
      ]),
    );
    expect(f).toMatchObject({ type: "light", filter: "JohnsonB", exposureSeconds: 2, binning: "2x2" });
    expect(f.temperatureC).toBeUndefined();
    expect(f.sources).toEqual({ filter: "INSFLNAM" });
    expect(f.notes?.join("\n")).toMatch(/CCDTEMP = -99 is a placeholder/);
    expect(normalizeFilter("JohnsonB")).toBe("B");
    expect(normalizeFilter("Bessell R")).toBe("R");
    expect(normalizeFilter("sloan_g'")).toBe("G");
  });

  it("ZWO ASIImg: no IMAGETYP (type from the folder or file name), comma-decimal EXPTIME read with a note", () => {
    const f = frameInfoFromHeader(
      summary("/lib/Bias/Bias_ASIImg_frame0001.fit", [
        "EXPOINUS=                   64",
        "EXPOSURE=              6,4E-05",
        "EXPTIME =              6,4E-05",
        "CCD-TEMP=                  26.",
        "BAYERPAT= 'GRBG    '",
      ]),
    );
    expect(f).toMatchObject({ type: "bias", temperatureC: 26, bayerPattern: "GRBG" });
    expect(f.exposureSeconds).toBeCloseTo(6.4e-5, 12);
    expect(f.sources?.type).toBe("file name");
    expect(f.notes?.join("\n")).toMatch(/decimal comma/);
    // Only EXPOINUS (µs): converted, and the source says so.
    const g = frameInfoFromHeader(summary("/lib/Dark/Dark_30s/frame0001.fit", ["EXPOINUS=             30000000"]));
    expect(g).toMatchObject({ type: "dark", exposureSeconds: 30 });
    expect(g.sources).toEqual({ type: "folder Dark_30s", exposureSeconds: "EXPOINUS (µs)" });
  });

  it("IRAF/NOAO: OBSTYPE, FILTER1/FILTER2 with an open wheel, date-only DATE-OBS completed by TIME-OBS", () => {
    const f = frameInfoFromHeader(
      summary("/x/n1.fits", [
        "OBSTYPE = 'zero    '",
        "FILTER1 = 'open    '",
        "FILTER2 = 'V       '",
        "DATE-OBS= '2021-03-18'",
        "TIME-OBS= '15:09:53'",
      ]),
    );
    expect(f).toMatchObject({ type: "bias", filter: "V", dateObs: "2021-03-18T15:09:53" });
    expect(f.sources).toEqual({ type: "OBSTYPE", filter: "FILTER2" });
  });

  it("temperatures: Kelvin converted, 0 with no cooler and -999 unknown, 0 with a cooler kept", () => {
    expect(frameInfoFromHeader(summary("/x/a.fit", ["IMAGETYP= 'Dark'", "CCD-TEMP=                263.15"])).temperatureC).toBeCloseTo(
      -10,
      6,
    );
    expect(frameInfoFromHeader(summary("/x/a.fit", ["IMAGETYP= 'Dark'", "CCD-TEMP=                  0.0"])).temperatureC).toBeUndefined();
    expect(frameInfoFromHeader(summary("/x/a.fit", ["IMAGETYP= 'Dark'", "CCD-TEMP=                 -999"])).temperatureC).toBeUndefined();
    expect(
      frameInfoFromHeader(summary("/x/a.fit", ["IMAGETYP= 'Dark'", "CCD-TEMP=                  0.0", "SET-TEMP=                  0.0"]))
        .temperatureC,
    ).toBe(0);
  });

  it("DATE-OBS with a zone suffix is converted to UTC", () => {
    expect(utcDate("2024-01-15T23:30:00+01:00")).toEqual({
      iso: "2024-01-15T22:30:00",
      note: "DATE-OBS written with zone +01:00, converted to UTC",
    });
    expect(utcDate("2024-01-15T00:30:00.250-0500")?.iso).toBe("2024-01-15T05:30:00.250");
    expect(utcDate("2024-01-15T22:30:00Z")?.iso).toBe("2024-01-15T22:30:00");
    expect(utcDate("2024-01-15T22:30:00")).toEqual({ iso: "2024-01-15T22:30:00" });
  });

  it("no keyword and no telling name: unknown, with the reason", () => {
    const f = frameInfoFromHeader(summary("/x/img_0001.fit", ["EXPTIME =                  1.0"]));
    expect(f.type).toBe("unknown");
    expect(f.notes?.[0]).toMatch(/type unknown: no IMAGETYP/);
    expect(frameTypeFromPath("/home/darkstar/img.fit")).toBeUndefined(); // whole words only
  });
});

const real = [
  process.env.TILE_COMPILE_DATA && join(process.env.TILE_COMPILE_DATA, "real"),
  new URL("../../../../../shared/data/real", import.meta.url).pathname,
  "/work/shared/data/real",
].find((p) => p && existsSync(p));
if (!real)
  console.warn(
    "SKIP: shared real frames not found ($TILE_COMPILE_DATA/real or ../shared/data/real); the real-dialect scan test is skipped",
  );

describe.skipIf(!real)("every real frame in shared/data/real scans with the right type, filter, exposure and temperature", () => {
  it("46 frames, none bad, none unknown", async () => {
    const r = await scanFrames([real!]);
    expect(r.bad).toEqual([]);
    expect(r.frames).toHaveLength(46);
    const rel = (p: string) => p.slice(real!.length + 1);
    const by = (prefix: string) => r.frames.filter((f) => rel(f.path).startsWith(prefix));
    // Calar Alto CAFOS.
    for (const f of by("caha-cafos-ngc2420/calib/bias/"))
      expect([f.type, f.exposureSeconds, f.temperatureC]).toEqual(["bias", 0, undefined]);
    for (const [band, n] of [
      ["B", 1],
      ["V", 1],
    ] as const) {
      const flats = by(`caha-cafos-ngc2420/calib/flat/${band}/`);
      expect(flats).toHaveLength(n);
      for (const f of flats) expect([f.type, normalizeFilter(f.filter!), f.sources?.filter]).toEqual(["flat", band, "INSFLNAM"]);
    }
    for (const [band, n] of [
      ["B", 6],
      ["V", 5],
    ] as const) {
      const lights = by(`caha-cafos-ngc2420/science/NGC2420/${band}/`);
      expect(lights).toHaveLength(n);
      for (const f of lights) {
        expect([f.type, normalizeFilter(f.filter!), f.temperatureC]).toEqual(["light", band, undefined]);
        expect([2, 3, 60]).toContain(f.exposureSeconds);
        expect(f.notes?.some((x) => /placeholder/.test(x))).toBe(true);
      }
    }
    // ZWO ASI120MC-S: types from the folders/files, comma-decimal bias exposure, real temperatures.
    const asi = (sub: string) => by(`asi120mc-s-calibration/${sub}/`);
    expect(asi("Bias").map((f) => f.type)).toEqual(Array(5).fill("bias"));
    for (const f of asi("Bias")) expect(f.exposureSeconds).toBeCloseTo(6.4e-5, 12);
    for (const [sub, exp] of [
      ["Dark/Dark_1s", 1],
      ["Dark/Dark_30s", 30],
      ["Dark/Dark_100s", 100],
    ] as const) {
      for (const f of asi(sub)) {
        expect([f.type, f.exposureSeconds, f.bayerPattern]).toEqual(["dark", exp, "GRBG"]);
        expect(f.temperatureC).toBeGreaterThanOrEqual(24);
        expect(f.temperatureC).toBeLessThanOrEqual(27);
      }
    }
    expect(asi("Flat").map((f) => [f.type, f.exposureSeconds])).toEqual(Array(4).fill(["flat", 0.005]));
    // IRAF StarGate (MaxIm DL): lights, 30 s, no filter, no temperature.
    const sg = by("iraf-stargate/");
    expect(sg).toHaveLength(10);
    for (const f of sg)
      expect([f.type, f.exposureSeconds, f.filter, f.temperatureC, f.binning]).toEqual(["light", 30, undefined, undefined, "1x1"]);
    expect(r.frames.filter((f) => f.type === "unknown")).toEqual([]);
  });
});
