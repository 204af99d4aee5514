/**
 * The TBQR stage's options (`stacking.method: tbqr`, `tile-compile reconstruct`) and their mapping from
 * tile_compile.yaml's root-level reference blocks (`global_metrics`, `tile`, `local_metrics`,
 * `reconstruction`, `assumptions`, `validation`, `synthetic`, `pipeline`). The contract between the
 * configuration and the engine that reconstructs (the built-in one is in @tile-compile/engine-native).
 */
import { z } from "zod";

/** What the TBQR stage reads (`StackingInput.options.tbqr`). */
export interface TbqrOptions {
  /** Global weight parameters α, β, γ (background, noise, gradient), the clamp of the exponent and its scale. */
  global: { background: number; noise: number; gradient: number; clamp: [number, number]; exponentScale?: number };
  tile: { sizeFactor: number; minSize: number; maxDivisor: number; overlapFraction: number; starMinCount: number };
  local: {
    starMinCount: number;
    star: { fwhm: number; roundness: number; contrast: number };
    structure: { metric: number; background: number };
    clamp: [number, number];
  };
  assumptions: { framesMin: number; framesReducedThreshold: number; allowEmergency: boolean; exposureTolerancePercent: number };
  epsilon: number;
  /**
   * Pass B's rejection: a value is left out beyond `low` / `high` σ of a pixel's values over the frames, the
   * mean and σ measured inside m ± 3σ of the values without their largest and smallest, so an outlier that
   * repeats in up to ~10 % of the frames (a hot pixel that stays on one sky position between dithers) is
   * judged against the clean frames and rejected.
   */
  clip: { low: number; high: number; iterations: number };
  /**
   * Largest background-noise increase over a plain mean of the raw frames (at the same star-flux scale)
   * that each tile's weights may cost, as predicted from the frames' measured tile noise and transparency
   * (`reconstruction.noise_budget`). Per tile the strength κ ≤ 3 of the seeing term is the largest that
   * stays within it (see `noiseBudgetKappa`). Measured stacks come out 1–3 % above the prediction (the
   * estimates' own noise, the rejection, the blending of neighbouring tiles), so the default 1.05 keeps the
   * measured noise ≤ 1.08× on the generated conditions (test/tbqr-conditions.test.ts: at most 1.077; 1.06
   * gave 1.087, 1.08 gave 1.096).
   */
  noiseBudget: number;
  /**
   * What the weights spend the noise budget on (`reconstruction.weighting`): `sharpness` — the seeing term
   * at the largest strength within the budget, every tile; `snr` — none: inverse-variance weights
   * (transparency and noise) only; `auto` (default) — the seeing term only in tiles where it is predicted
   * to make the tile at least 2 % sharper than the SNR weights, so a set whose frames' seeing hardly differs
   * is not made noisier for nothing. Absent: `sharpness` (the behaviour before the option).
   */
  weighting?: "sharpness" | "snr" | "auto";
  /**
   * The sky the reconstruction keeps (`stacking.normalization`): `mean` (default) — the plain mean's, Σ_f of
   * the frames' own quadratic sky surfaces / N (every frame's gradient averaged in); `flattest` (with
   * `normalization: local`) — the flattest frame's surface (the one whose gradient and curvature are the
   * smallest over the frame) at the mean's level, so gradients that only some frames carry are not in it;
   * `flattest` also applies each frame's transparency map (core's localScales on the photometry stars) to
   * its signal above the sky, as `normalization: local` does in the rejection stackers.
   */
  skyReference?: "mean" | "flattest";
  /** Where frame metrics, the tile grid, weight maps, synthetic frames and validation.json go. */
  artifactsDir?: string;
  /** Checks on the result (`validation.*`, `pipeline.abort_on_fail`); none when absent. */
  validation?: TbqrValidation;
  /** Number of synthetic frames (states) in full mode: `synthetic.*`; the reference's defaults when absent. */
  synthetic?: { framesMin: number; framesMax: number; clusterRange: [number, number] };
}

export interface TbqrValidation {
  minFwhmImprovementPercent: number;
  maxBackgroundRmsIncreasePercent: number;
  minTileWeightVariance: number;
  requireNoTilePattern: boolean;
  abortOnFail: boolean;
}

/** TBQR options from tile_compile.yaml's reference keys. */
export function tbqrOptionsFromConfig(
  cfg: {
    global_metrics: {
      weights: { background: number; noise: number; gradient: number };
      clamp: [number, number];
      weight_exponent_scale: number;
    };
    tile: { size_factor: number; min_size: number; max_divisor: number; overlap_fraction: number; star_min_count: number };
    local_metrics: {
      clamp: [number, number];
      star_mode: { weights: { fwhm: number; roundness: number; contrast: number } };
      structure_mode: { metric_weight: number; background_weight: number };
    };
    reconstruction: { noise_budget: number; clip: [number, number]; epsilon: number; weighting: "sharpness" | "snr" | "auto" };
    stacking?: { normalization?: string };
    assumptions: {
      frames_min: number;
      frames_reduced_threshold: number;
      allow_emergency_mode: boolean;
      exposure_time_tolerance_percent: number;
    };
    validation: {
      min_fwhm_improvement_percent: number;
      max_background_rms_increase_percent: number;
      min_tile_weight_variance: number;
      require_no_tile_pattern: boolean;
    };
    pipeline: { abort_on_fail: boolean };
    synthetic: { frames_min: number; frames_max: number; clustering: { cluster_count_range: [number, number] } };
  },
  artifactsDir?: string,
): TbqrOptions {
  return {
    global: { ...cfg.global_metrics.weights, clamp: cfg.global_metrics.clamp, exponentScale: cfg.global_metrics.weight_exponent_scale },
    tile: {
      sizeFactor: cfg.tile.size_factor,
      minSize: cfg.tile.min_size,
      maxDivisor: cfg.tile.max_divisor,
      overlapFraction: cfg.tile.overlap_fraction,
      starMinCount: cfg.tile.star_min_count,
    },
    local: {
      starMinCount: cfg.tile.star_min_count,
      star: cfg.local_metrics.star_mode.weights,
      structure: { metric: cfg.local_metrics.structure_mode.metric_weight, background: cfg.local_metrics.structure_mode.background_weight },
      clamp: cfg.local_metrics.clamp,
    },
    assumptions: {
      framesMin: cfg.assumptions.frames_min,
      framesReducedThreshold: cfg.assumptions.frames_reduced_threshold,
      allowEmergency: cfg.assumptions.allow_emergency_mode,
      exposureTolerancePercent: cfg.assumptions.exposure_time_tolerance_percent,
    },
    epsilon: cfg.reconstruction.epsilon,
    clip: { low: cfg.reconstruction.clip[0], high: cfg.reconstruction.clip[1], iterations: 2 },
    noiseBudget: cfg.reconstruction.noise_budget,
    weighting: cfg.reconstruction.weighting,
    ...(cfg.stacking?.normalization === "local" ? { skyReference: "flattest" as const } : {}),
    ...(artifactsDir ? { artifactsDir } : {}),
    synthetic: {
      framesMin: cfg.synthetic.frames_min,
      framesMax: cfg.synthetic.frames_max,
      clusterRange: cfg.synthetic.clustering.cluster_count_range,
    },
    validation: {
      minFwhmImprovementPercent: cfg.validation.min_fwhm_improvement_percent,
      maxBackgroundRmsIncreasePercent: cfg.validation.max_background_rms_increase_percent,
      minTileWeightVariance: cfg.validation.min_tile_weight_variance,
      requireNoTilePattern: cfg.validation.require_no_tile_pattern,
      abortOnFail: cfg.pipeline.abort_on_fail,
    },
  };
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** The parameter groups every TbqrOptions has (made by `tbqrOptionsFromConfig`, never typed by hand in YAML). */
function isTbqrOptions(v: unknown): v is TbqrOptions {
  return (
    isRecord(v) &&
    ["global", "tile", "local", "assumptions", "clip"].every((k) => isRecord(v[k])) &&
    typeof v.noiseBudget === "number" &&
    typeof v.epsilon === "number"
  );
}

/**
 * The options of `stacking:tbqr`: `tbqr`, the TbqrOptions made from tile_compile.yaml by
 * `tbqrOptionsFromConfig`; absent when a caller has no configuration (the engine's defaults then).
 */
export const tbqrStageOptionsSchema = z.object({
  tbqr: z.custom<TbqrOptions>(isTbqrOptions, "expected the TBQR options made by tbqrOptionsFromConfig").optional(),
});
export type TbqrStageOptions = z.infer<typeof tbqrStageOptionsSchema>;
