/**
 * The per-group records run.json carries for the run report: every frame of a (filter, exposure) group
 * with the figures registration measured, the weight stacking gave it, and whether it was stacked or why
 * not. Built from the registration result (transforms.json) and the stacking result, so both the
 * pipeline (`run`) and `reconstruct` describe their groups the same way.
 */
import type { DrizzleSummary, RegistrationResult, StackingResult, TbqrSummary } from "../kernel/contracts.js";

/** One frame of a group, as run.json and the run report show it. */
export interface FrameRecord {
  /** The frame registration read (a calibrated light). */
  path: string;
  /** The registered frame, when registration wrote one. */
  registered?: string;
  fwhmPx?: number;
  roundness?: number;
  background?: number;
  noise?: number;
  /** Stars detected in the frame. */
  detected?: number;
  /** Satellite/aircraft trails found in the frame (0 when none). */
  trails?: number;
  /** Stars matched to the reference, and the fit's RMS / median residual (px). */
  matched?: number;
  rmsPx?: number;
  medianPx?: number;
  /** Weight in the stack relative to the mean frame (1 = average; equal weights: 1). */
  weight?: number;
  /** Whether the frame is in the stack; otherwise `reason` says why it was left out. */
  stacked: boolean;
  reason?: string;
}

/** A (filter, exposure) group: its reference frame, its frames and its stack. */
export interface GroupRecord {
  label: string;
  filter: string;
  exposureSeconds: number;
  /** The registration reference (a frame path). */
  reference: string;
  frames: FrameRecord[];
  stack?: {
    path: string;
    method: string;
    frames: number;
    rejectedPercent?: { low: number; high: number };
    tbqr?: TbqrSummary;
    drizzle?: DrizzleSummary;
  };
}

/** The group record from what registration and stacking returned. */
export function groupRecord(
  g: { label: string; filter: string; exposureSeconds: number },
  reg: RegistrationResult,
  stack?: {
    path: string;
    method: string;
    result: Pick<StackingResult, "frameCount" | "rejectedFrames" | "frameWeights" | "rejectedPercent" | "tbqr" | "drizzle">;
  },
): GroupRecord {
  const weights = new Map((stack?.result.frameWeights ?? []).map((w) => [w.path, w.weight]));
  const dropped = new Map((stack?.result.rejectedFrames ?? []).map((r) => [r.path, r.reason]));
  const frames: FrameRecord[] = reg.frames.map((f) => {
    const r: FrameRecord = { path: f.input, stacked: false };
    if (f.output) r.registered = f.output;
    for (const k of ["fwhmPx", "roundness", "background", "noise", "detected", "rmsPx", "medianPx"] as const)
      if (typeof f[k] === "number" && Number.isFinite(f[k])) r[k] = f[k];
    if (f.fwhmPx !== undefined) r.trails = f.trails?.length ?? 0;
    if (typeof f.stars === "number") r.matched = f.stars;
    // The stacker saw the registered frame, or — the fused path and drizzle — the calibrated one.
    const seen = f.output && (weights.has(f.output) || dropped.has(f.output)) ? f.output : f.input;
    if (f.error) r.reason = `not registered: ${f.error}`;
    else if (dropped.has(seen)) r.reason = dropped.get(seen)!;
    else if ((f.output || f.matrix) && stack) {
      r.stacked = true;
      r.weight = weights.get(seen) ?? 1;
    } else if (!stack) r.reason = "not stacked in this run";
    return r;
  });
  return {
    label: g.label,
    filter: g.filter,
    exposureSeconds: g.exposureSeconds,
    reference: reg.reference,
    frames,
    ...(stack
      ? {
          stack: {
            path: stack.path,
            method: stack.method,
            frames: stack.result.frameCount,
            ...(stack.result.rejectedPercent ? { rejectedPercent: stack.result.rejectedPercent } : {}),
            ...(stack.result.tbqr ? { tbqr: stack.result.tbqr } : {}),
            ...(stack.result.drizzle ? { drizzle: stack.result.drizzle } : {}),
          },
        }
      : {}),
  };
}
