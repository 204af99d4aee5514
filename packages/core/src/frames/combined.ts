/**
 * Provenance keywords every combined image carries, whichever engine combined it (native stacking,
 * TBQR, Siril through engine-siril).
 */
import type { FitsHeaderSummary } from "@tile-compile/fits";

/** Provenance keywords of a combined frame: NCOMBINE, STACKCNT, EXPTIME (mean), LIVETIME (sum), DATE-OBS/DATE-END. */
export function combinedKeywords(
  summaries: FitsHeaderSummary[],
): { key: string; value: number | string; comment: string; float?: boolean }[] {
  return provenanceKeywords(
    summaries.map((s) => s.header.getNumber("EXPTIME") ?? s.header.getNumber("EXPOSURE")),
    summaries.map((s) => s.header.getString("DATE-OBS")),
  );
}

/**
 * {@link combinedKeywords} from each frame's exposure (EXPTIME, else EXPOSURE) and DATE-OBS alone, one entry
 * per frame (undefined where the header has none) — for callers that do not keep every frame's header.
 */
export function provenanceKeywords(
  exposures: (number | undefined)[],
  datesObs: (string | undefined)[],
): { key: string; value: number | string; comment: string; float?: boolean }[] {
  const out: { key: string; value: number | string; comment: string; float?: boolean }[] = [
    { key: "NCOMBINE", value: exposures.length, comment: "number of frames combined" },
    { key: "STACKCNT", value: exposures.length, comment: "number of frames stacked" },
  ];
  const exps = exposures.filter((v): v is number => v !== undefined);
  if (exps.length === exposures.length && exps.length > 0) {
    const live = exps.reduce((a, b) => a + b, 0);
    out.push({ key: "EXPTIME", value: live / exps.length, comment: "[s] mean exposure of one frame", float: true });
    out.push({ key: "LIVETIME", value: live, comment: "[s] total exposure of all frames", float: true });
  }
  const dates = datesObs.filter((d): d is string => !!d).sort();
  if (dates.length > 0) {
    out.push({ key: "DATE-OBS", value: dates[0]!, comment: "start of the first frame" });
    out.push({ key: "DATE-END", value: dates[dates.length - 1]!, comment: "start of the last frame" });
  }
  return out;
}
