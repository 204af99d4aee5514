/**
 * Filter names → canonical letters. Capture programs write `Ha`, `H-alpha`, `OIII`, `Lum`, `Red`…; jobs use
 * the seed's single letters. The table can be extended in tile_compile.yaml (`filters.aliases`).
 */
export const DEFAULT_FILTER_ALIASES: Readonly<Record<string, string>> = {
  L: "L",
  LUM: "L",
  LUMINANCE: "L",
  CLEAR: "L",
  CLR: "L",
  R: "R",
  RED: "R",
  G: "G",
  GREEN: "G",
  B: "B",
  BLUE: "B",
  H: "H",
  HA: "H",
  HALPHA: "H",
  "H-ALPHA": "H",
  H_ALPHA: "H",
  "H ALPHA": "H",
  O: "O",
  O3: "O",
  OIII: "O",
  "O-III": "O",
  S: "S",
  S2: "S",
  SII: "S",
  "S-II": "S",
  // Seestar S50's built-in filters: IRCUT is a broadband (RGB through the CFA), LP the dual-band.
  IRCUT: "IRCUT",
  LP: "LP",
};

/** Photometric-system prefixes observatories write before the band letter (`JohnsonV`, `Bessell R`, `sloan_g`). */
const PHOTOMETRIC = /^(JOHNSON|BESSELL?|COUSINS|SLOAN|SDSS)[\s_-]*([UBVRIZ]|[UGRIZ]'?)$/;

export function normalizeFilter(name: string, extra: Record<string, string> = {}): string {
  const key = name.trim().toUpperCase().replace(/\s+/g, " ");
  for (const table of [extra, DEFAULT_FILTER_ALIASES]) {
    for (const [k, v] of Object.entries(table)) if (k.toUpperCase() === key) return v;
  }
  const band = PHOTOMETRIC.exec(key);
  if (band) return band[2]!.replace("'", "");
  return name.trim();
}
