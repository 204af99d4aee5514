/**
 * Palettes as data: output channel (R, G, B, and L for a luminance layer) → { input channel: weight }.
 * Users add their own under `composition.palettes` in tile_compile.yaml; a job's `type` names one.
 * `RGB` on a one-shot-colour stack (channels R, G, B of one cube) is the identity.
 */
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
