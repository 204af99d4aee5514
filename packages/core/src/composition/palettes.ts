/**
 * Palettes as data: output channel (R, G, B, and L for a luminance layer) → { input channel: weight }.
 * Users add their own under `composition.palettes` in tile_compile.yaml; a job's `type` names one.
 * `RGB` on a one-shot-colour stack (channels R, G, B of one cube) is the identity.
 */
import type { ColorBalanceRecord, ColorBalanceRequest } from "../kernel/contracts.js";

export type Palette = Record<string, Record<string, number>>;

export const BUILTIN_PALETTES: Readonly<Record<string, Palette>> = {
  RGB: { R: { R: 1 }, G: { G: 1 }, B: { B: 1 } },
  LRGB: { L: { L: 1 }, R: { R: 1 }, G: { G: 1 }, B: { B: 1 } },
  SHO: { R: { S: 1 }, G: { H: 1 }, B: { O: 1 } },
  HOO: { R: { H: 1 }, G: { O: 1 }, B: { O: 1 } },
  LSHO: { L: { L: 1 }, R: { S: 1 }, G: { H: 1 }, B: { O: 1 } },
  LHOO: { L: { L: 1 }, R: { H: 1 }, G: { O: 1 }, B: { O: 1 } },
};

/** Input channels a palette needs. */
export function paletteInputs(p: Palette): string[] {
  return [...new Set(Object.values(p).flatMap((m) => Object.keys(m)))].sort();
}

/** `composition.color` of tile_compile.yaml. */
export interface ColorConfig {
  neutralize_background: boolean;
  white_balance?: "stars" | "none" | undefined;
  star_color: { R: number; G: number; B: number };
}

/**
 * The colour balance a palette gets: background neutralisation as configured; a star white balance by
 * default only for broadband palettes (every input one of L, R, G, B — the stars' colours mean something
 * there), never by default for narrowband ones (SHO, HOO: their stars would be pushed to neutral by a
 * mapping that is false colour anyway).
 */
export function colorBalanceFor(c: ColorConfig, palette: Palette): ColorBalanceRequest {
  const broadband = paletteInputs(palette).every((x) => ["L", "R", "G", "B"].includes(x));
  return {
    neutralizeBackground: c.neutralize_background,
    whiteBalance: c.white_balance ?? (broadband ? "stars" : "none"),
    starColor: { ...c.star_color },
  };
}

/** What a colour balance did, in one line (the run's log, the composed image's HISTORY). */
export function describeColorBalance(c: ColorBalanceRecord): string {
  const parts: string[] = [];
  if (c.neutralizeBackground && Number.isFinite(c.skyCommon))
    parts.push(
      `background neutralised (sky R ${c.sky.R.toPrecision(5)}, G ${c.sky.G.toPrecision(5)}, B ${c.sky.B.toPrecision(5)} → ${c.skyCommon.toPrecision(5)})`,
    );
  if (c.whiteBalance === "stars")
    parts.push(
      c.skipped
        ? `white balance skipped: ${c.skipped}`
        : `white balance on ${c.stars} stars (median R/G ${c.medianRatio!.RG.toFixed(3)}, B/G ${c.medianRatio!.BG.toFixed(3)}): R ×${c.factor.R.toFixed(4)}, B ×${c.factor.B.toFixed(4)}`,
    );
  else if (c.skipped) parts.push(c.skipped);
  return parts.join("; ") || "none";
}
