/**
 * The schema of tile_compile.yaml, written once with zod. `schema.json` (shipped in the package, for
 * `# yaml-language-server: $schema=…`) is generated from it by `pnpm schema` and guarded by a test.
 *
 * Keys are snake_case as in the user's tile_compile README. Every block is strict: an unknown key is an
 * error, reported with its path together with every other problem of the file.
 */
import { z } from "zod";
import { CHECK_NAMES } from "../calibration/health.js";

const engineRef = z
  .string()
  .min(1)
  .describe("Engine: a short name of an official engine (native, siril), a full npm package name, or a relative path");

/** Sizes like `4GiB`, `512 MiB`, `2GB` or a number of bytes. */
export const byteSize = z.union([
  z.number().int().positive(),
  z.string().regex(/^\s*\d+(\.\d+)?\s*(B|KB|KiB|MB|MiB|GB|GiB|TB|TiB)\s*$/i, "expected a size such as 512MiB or 4GiB"),
]);

export function parseByteSize(v: number | string): number {
  if (typeof v === "number") return v;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B)\s*$/i.exec(v)!;
  const unit = m[2]!.toUpperCase();
  const pow = { B: 0, K: 1, M: 2, G: 3, T: 4 }[unit[0] as "B" | "K" | "M" | "G" | "T"] ?? 0;
  const base = unit.includes("I") ? 1024 : 1000;
  return Math.round(Number(m[1]) * base ** pow);
}

/**
 * The stacking vocabulary, defined once: every engine's options are typed by these names, so a new method
 * is added here and the compiler lists each engine that must map it.
 */
export const rejectionMethods = ["none", "percentile", "sigma", "mad", "sigma_median", "winsorized", "linear_fit", "gesdt"] as const;
/** Pixel rejection of a stack (`stacking.rejection`). */
export type RejectionMethod = (typeof rejectionMethods)[number];
/** Pixel rejection of master bias, dark and flat (`calibration.rejection`); part of each master's recipe. */
export const masterRejections = ["winsorized", "sigma"] as const;
export type MasterRejection = (typeof masterRejections)[number];
/** Winsorized sigma clipping: the default of stacks and masters alike. */
export const DEFAULT_REJECTION = "winsorized" satisfies RejectionMethod & MasterRejection;
export const normalizations = ["none", "additive", "multiplicative", "additive_scaling", "multiplicative_scaling", "local"] as const;
/** Frame normalisation before combining (`stacking.normalization`). */
export type Normalization = (typeof normalizations)[number];

export const interpolations = ["bilinear", "bicubic", "lanczos3"] as const;
/** Resampling kernel of registered frames (`registration.interpolation`). */
export type Interpolation = (typeof interpolations)[number];
export const transformModels = ["shift", "similarity", "affine", "homography"] as const;
/** Demosaic of one-shot-colour (Bayer) frames before they are resampled (`registration.debayer`). */
export const debayerMethods = ["rcd", "bilinear"] as const;
export type DebayerChoice = (typeof debayerMethods)[number];
/**
 * The demosaic when `registration.debayer` is not set: RCD. On the Seestar M 94 frames it is as sharp as
 * Siril 1.0.6's (its default, also RCD) at the same noise with the same resampling, and sharper than the
 * bilinear demosaic by 5–35 % per channel (test/real-debayer.test.ts).
 */
export const DEFAULT_DEBAYER: DebayerChoice = "rcd";
export const weightings = ["none", "noise", "fwhm", "stars", "psf_snr"] as const;
/** Frame weights of a stack (`stacking.weighting`). */
export type Weighting = (typeof weightings)[number];

const sigmaPair = z.tuple([z.number().positive(), z.number().positive()]);
const frameFilters = z.partialRecord(
  z.enum(["fwhm", "roundness", "stars", "background"]),
  z.union([z.strictObject({ keep: z.number().gt(0).max(100) }), z.strictObject({ kappa: z.number().positive() })]),
);

/**
 * The options the kernel hands a registration provider (`registration.transform`, `.interpolation`): an
 * engine declares `optionsSchema: registrationOptionsSchema` (or an `.extend({ … })` of it) and receives
 * them parsed and typed. Absent keys are the engine's defaults.
 */
export const registrationOptionsSchema = z.object({
  transform: z.enum(transformModels).optional(),
  interpolation: z.enum(interpolations).optional(),
  debayer: z.enum(debayerMethods).optional(),
});
export type RegistrationOptions = z.infer<typeof registrationOptionsSchema>;

/** The options of a stacking method (`stacking.rejection`, `.sigma`, `.normalization`, `.weighting`, `.frame_filters`). */
export const stackingOptionsSchema = z.object({
  rejection: z.enum(rejectionMethods).optional(),
  sigma: sigmaPair.optional(),
  normalization: z.enum(normalizations).optional(),
  local_normalization: z.object({ scale: z.number().int().min(16) }).optional(),
  weighting: z.enum(weightings).optional(),
  frame_filters: frameFilters.optional(),
  drizzle: z
    .object({
      scale: z.number().min(1).max(4),
      pixfrac: z.number().min(0).max(1),
      kernel: z.enum(["square", "point"]),
      cfa: z.boolean().optional(),
    })
    .optional(),
});
export type StackingOptions = z.infer<typeof stackingOptionsSchema>;

/** The options of a background model (`background.degree`, `.grid`). */
export const backgroundOptionsSchema = z.object({
  degree: z.number().int().min(1).max(4).optional(),
  grid: z.number().int().min(4).max(64).optional(),
});
export type BackgroundOptions = z.infer<typeof backgroundOptionsSchema>;

export const configSchema = z.strictObject({
  $schema: z.string().optional(),
  $import: z
    .union([z.string(), z.array(z.string())])
    .optional()
    .describe("Shared presets merged under this file (paths relative to it)"),
  engines: z.array(engineRef).default([]).describe("Engines to load besides the built-in ones; listed engines are the only ones used"),
  base_dir: z
    .string()
    .min(1)
    .optional()
    .describe("Library root of job files (holding calibration/ and jobs/); default: found from the job file's location"),
  filters: z
    .strictObject({
      aliases: z.record(z.string().min(1), z.string().min(1)).default({}).describe('Extra filter-name aliases, e.g. { "Halpha 7nm": H }'),
    })
    .default({ aliases: {} }),
  calibration: z
    .strictObject({
      engine: engineRef.optional(),
      method: z.string().default("native").describe("Calibration method: native (built-in), siril, or one a loaded engine provides"),
      rejection: z
        .enum(masterRejections)
        .default(DEFAULT_REJECTION)
        .describe("Pixel rejection of master bias, dark and flat (3σ low and high); part of each master's recipe"),
      checks: z
        .partialRecord(z.enum(CHECK_NAMES), z.enum(["error", "warn", "off"]))
        .default({})
        .describe(
          "Calibration health checks (offset, double_offset, negative_pixels, master_mismatch, flat_exposure, vignetting_residual, dust_residual, temperature): a failing check stops the run (error, the default) unless relaxed by name to warn or off; a master of another size is always refused",
        ),
    })
    .default({ method: "native", rejection: DEFAULT_REJECTION, checks: {} }),
  registration: z
    .strictObject({
      engine: z
        .string()
        .default("relative")
        .describe("Registration method: relative (built-in), wcs_anchor, siril, or one a loaded engine provides"),
      provider: engineRef.optional().describe("Which engine provides the method, when more than one does"),
      reference: z.union([z.literal("auto"), z.number().int().nonnegative(), z.string().min(1)]).default("auto"),
      output_dir: z.string().default("registered"),
      registered_filename_pattern: z.string().default("reg_{index:05d}.fit"),
      transform: z
        .enum(transformModels)
        .default("similarity")
        .describe("Transform model fitted to the matched stars (relative; Siril 1.2+ as -transf=)"),
      interpolation: z
        .enum(interpolations)
        .optional()
        .describe(
          "Resampling kernel of the registered frames; default lanczos3 (Siril: its own default; 1.0.6 always resamples bilinearly)",
        ),
      debayer: z
        .enum(debayerMethods)
        .optional()
        .describe(
          "Demosaic of one-shot-colour (Bayer) frames before they are resampled: rcd (default; Ratio Corrected Demosaicing, edge-aware, Siril's default; star colours kept) or bilinear (softer stars, less pixel noise)",
        ),
      write_registered: z
        .boolean()
        .default(true)
        .describe(
          "Write the registered frames (default). false: the fused path — registration only measures each frame's transform (transforms.json), and the stacker warps the calibrated frames band by band as it reads them: the same stack, no registered frames written or read back (built-in registration and mean/median/rejection stacking only)",
        ),
    })
    .default({
      engine: "relative",
      reference: "auto",
      output_dir: "registered",
      registered_filename_pattern: "reg_{index:05d}.fit",
      transform: "similarity",
      write_registered: true,
    }),
  stacking: z
    .strictObject({
      engine: engineRef.optional(),
      method: z
        .string()
        .default("rejection")
        .describe(
          "rejection (mean of the values surviving stacking.rejection; default), mean (alias: average), median, tbqr, or one a loaded engine provides",
        ),
      rejection: z
        .union([z.enum(rejectionMethods), z.string().min(1)])
        .default(DEFAULT_REJECTION)
        .describe(
          "Pixel rejection: none, percentile, sigma, mad, sigma_median, winsorized (default), linear_fit, gesdt — each engine's options schema says which it offers (the built-in one has all but gesdt; Siril all), and an engine may add its own",
        ),
      sigma: sigmaPair.default([3, 3]).describe("[low, high] rejection thresholds"),
      normalization: z
        .enum(normalizations)
        .default("additive")
        .describe(
          "Frame normalisation before stacking. additive (default) keeps fluxes; the *_scaling variants also equalise the noise, which rescales star fluxes by the frames' noise ratio (measured: 3–6 % colour errors on the demo set); local: per frame a smooth scale map from the same stars' photometry in every frame (clouds, haze over part of a frame) and a smooth offset map onto a clean reference sky, fitted on sky boxes (gradients that differ between frames and nights — moon, light dome — removed before rejection); fluxes levelled to the clearest frames",
        ),
      local_normalization: z
        .strictObject({
          scale: z
            .number()
            .int()
            .min(16)
            .default(128)
            .describe(
              "Box size (px) of the local sky model: larger than any star's halo (~20× a 5-px FWHM), smaller than the sky's gradients (they span the field)",
            ),
        })
        .default({ scale: 128 })
        .describe("normalization: local — the scale of the per-frame sky model"),
      weighting: z
        .enum(weightings)
        .default("none")
        .describe(
          "Frame weights: none, noise (1/σ² of the normalised frame), fwhm (1/FWHM²), stars (star count) or psf_snr ((S/(σ·FWHM))²: the point-source signal-to-noise, S the frame's star fluxes relative to the reference's)",
        ),
      frame_filters: frameFilters
        .default({})
        .describe("Drop frames before stacking: e.g. { fwhm: { kappa: 2 }, stars: { keep: 90 } } (keep the best 90 %)"),
      drizzle: z
        .strictObject({
          scale: z
            .union([z.literal(1), z.literal(1.5), z.literal(2), z.literal(3)])
            .default(2)
            .describe("Output pixels per input pixel, per axis: 1, 1.5, 2 (default) or 3"),
          pixfrac: z
            .number()
            .min(0.1)
            .max(1)
            .default(0.8)
            .describe("Drop size as a fraction of an input pixel (0.1–1; default 0.8): smaller is sharper and needs more dithered frames"),
          kernel: z.enum(["square", "point"]).default("square").describe("Drop shape: square (default) or point"),
          cfa: z
            .boolean()
            .default(true)
            .describe(
              "One-shot-colour (Bayer) frames: drizzle each photosite into its own colour plane, no demosaic (Bayer drizzle; default). false: demosaic first, then drizzle",
            ),
        })
        .optional()
        .describe(
          "Drizzle (variable-pixel linear reconstruction) of the calibrated frames through their registration transforms onto a grid `scale` times finer: sharper stars from undersampled, dithered frames. Built-in mean/rejection stacking; rejection by the 1× stack blotted back; writes stack_…_coverage.fit",
        ),
      rejection_maps: z
        .boolean()
        .default(false)
        .describe(
          "Also write stack_<filter>_<exposure>s_rejlow.fit and _rejhigh.fit: per pixel, how many frames were rejected below and above",
        ),
      input_dir: z.string().default("synthetic"),
      input_pattern: z.string().default("syn_*.fits"),
      output_file: z.string().default("stacked.fit"),
    })
    .default({
      method: "rejection",
      rejection: "winsorized",
      sigma: [3, 3],
      normalization: "additive",
      local_normalization: { scale: 128 },
      weighting: "none",
      frame_filters: {},
      rejection_maps: false,
      input_dir: "synthetic",
      input_pattern: "syn_*.fits",
      output_file: "stacked.fit",
    }),
  composition: z
    .strictObject({
      engine: engineRef.optional(),
      method: z.string().default("palette").describe("Composition method: palette (built-in) or one a loaded engine provides"),
      palette: z
        .string()
        .optional()
        .describe("Palette name (built-in RGB, LRGB, SHO, HOO, LSHO, LHOO or one of composition.palettes); default: the job's type"),
      palettes: z
        .record(z.string(), z.record(z.string(), z.record(z.string(), z.number())))
        .default({})
        .describe("User palettes: name → output channel → { filter: weight }"),
      color: z
        .strictObject({
          neutralize_background: z
            .boolean()
            .default(true)
            .describe("Move every output channel's sky (the darkest quarter of the image's boxes) to one level, so the background is grey"),
          white_balance: z
            .enum(["stars", "none"])
            .optional()
            .describe(
              "stars: scale R and B so the median colour of isolated, unsaturated stars is star_color (default for palettes of R, G, B inputs: RGB, LRGB); none: leave the channels' scales (default for narrowband palettes: SHO, HOO, …)",
            ),
          star_color: z
            .strictObject({ R: z.number().positive(), G: z.number().positive(), B: z.number().positive() })
            .default({ R: 1, G: 1, B: 1 })
            .describe("The colour the median star is given by white_balance: stars (R : G : B; default neutral)"),
        })
        .default({ neutralize_background: true, star_color: { R: 1, G: 1, B: 1 } })
        .describe("Colour balance of the composed image: background neutralisation and a star-based white balance"),
    })
    .default({ method: "palette", palettes: {}, color: { neutralize_background: true, star_color: { R: 1, G: 1, B: 1 } } }),
  background: z
    .strictObject({
      engine: engineRef.optional().describe("Engine providing the method (e.g. siril for polynomial through seqsubsky)"),
      method: z
        .string()
        .default("none")
        .describe(
          "Background extraction: none (default), polynomial or rbf (thin-plate spline) on a sigma-clipped sample grid, or one a loaded engine provides",
        ),
      degree: z.number().int().min(1).max(4).default(2).describe("Polynomial degree"),
      grid: z.number().int().min(4).max(64).default(16).describe("Sample boxes across the longer side"),
      on: z
        .enum(["frames", "stacks"])
        .default("frames")
        .describe("Extract from every calibrated frame, or from the stacks before composition"),
    })
    .default({ method: "none", degree: 2, grid: 16, on: "frames" }),
  global_metrics: z
    .strictObject({
      weights: z
        .strictObject({ background: z.number().default(0.4), noise: z.number().default(0.3), gradient: z.number().default(0.3) })
        .default({ background: 0.4, noise: 0.3, gradient: 0.3 })
        .describe("TBQR global quality Q = α(−B̃) + β(−σ̃) + γẼ; must sum to 1"),
      clamp: z.tuple([z.number(), z.number()]).default([-3, 3]),
      weight_exponent_scale: z.number().positive().default(1),
    })
    .default({ weights: { background: 0.4, noise: 0.3, gradient: 0.3 }, clamp: [-3, 3], weight_exponent_scale: 1 }),
  tile: z
    .strictObject({
      size_factor: z.number().positive().default(32),
      min_size: z.number().int().min(16).default(64),
      max_divisor: z.number().int().min(1).default(6),
      overlap_fraction: z.number().min(0).max(0.5).default(0.25),
      star_min_count: z.number().int().min(0).default(3),
    })
    .default({ size_factor: 32, min_size: 64, max_divisor: 6, overlap_fraction: 0.25, star_min_count: 3 }),
  local_metrics: z
    .strictObject({
      clamp: z.tuple([z.number(), z.number()]).default([-3, 3]),
      star_mode: z
        .strictObject({
          weights: z
            .strictObject({ fwhm: z.number().default(0.6), roundness: z.number().default(0.2), contrast: z.number().default(0.2) })
            .default({ fwhm: 0.6, roundness: 0.2, contrast: 0.2 }),
        })
        .default({ weights: { fwhm: 0.6, roundness: 0.2, contrast: 0.2 } }),
      structure_mode: z
        .strictObject({ metric_weight: z.number().default(0.7), background_weight: z.number().default(0.3) })
        .default({ metric_weight: 0.7, background_weight: 0.3 }),
    })
    .default({
      clamp: [-3, 3],
      star_mode: { weights: { fwhm: 0.6, roundness: 0.2, contrast: 0.2 } },
      structure_mode: { metric_weight: 0.7, background_weight: 0.3 },
    }),
  reconstruction: z
    .strictObject({
      noise_budget: z
        .number()
        .min(1)
        .max(2)
        .default(1.05)
        .describe(
          "Largest background-noise increase over a plain mean the TBQR weights may cost, as predicted from the frames' measured noise (the stack comes out 1–3 % above: 1.05 keeps it within 1.08)",
        ),
      clip: z
        .tuple([z.number().positive(), z.number().positive()])
        .default([5, 5])
        .describe(
          "Per-pixel rejection thresholds across frames [low, high] in σ; each pixel's most extreme value is judged against the other frames' mean and σ",
        ),
      epsilon: z.number().positive().default(1e-6),
      weighting: z
        .enum(["sharpness", "snr", "auto"])
        .default("auto")
        .describe(
          "What TBQR's weights spend the noise budget on: sharpness (the local seeing, every tile), snr (transparency and noise only: the least noise), auto (default: the SNR weights unless the frames' seeing varies by more than the noise budget can use — 6.2 % at 1.05 —, then the seeing only in tiles where it is predicted to make them ≥ 2 % sharper)",
        ),
    })
    .default({ noise_budget: 1.05, clip: [5, 5], epsilon: 1e-6, weighting: "auto" }),
  assumptions: z
    .strictObject({
      frames_min: z.number().int().min(2).default(50),
      frames_reduced_threshold: z.number().int().min(2).default(200),
      allow_emergency_mode: z
        .boolean()
        .default(false)
        .describe("Reconstruct sets below frames_min (reduced, no clustering) instead of refusing"),
      exposure_time_tolerance_percent: z.number().nonnegative().default(5),
    })
    .refine((a) => a.frames_min < a.frames_reduced_threshold, "frames_min must be below frames_reduced_threshold")
    .default({ frames_min: 50, frames_reduced_threshold: 200, allow_emergency_mode: false, exposure_time_tolerance_percent: 5 }),
  hdr: z
    .strictObject({
      blend: z.boolean().default(false).describe("Blend the exposures of a filter (HDR) instead of skipping composition"),
      min_frames: z
        .number()
        .int()
        .min(1)
        .default(3)
        .describe(
          "A filter's exposure group with fewer frames than this, beside a larger group, is left out (listed as a likely stray) instead of turning the job into HDR mode",
        ),
    })
    .default({ blend: false, min_frames: 3 }),
  stretch: z
    .strictObject({
      engine: engineRef.optional(),
      method: z.string().default("autostretch"),
    })
    .default({ method: "autostretch" }),
  runtime: z
    .strictObject({
      threads: z
        .union([z.literal("auto"), z.number().int().positive().max(1024, "at most 1024 threads (use auto for one per core)")])
        .default("auto"),
      memory_budget: byteSize.default("4GiB").describe("Pixel data held at once by a stage"),
      stage_timeout_seconds: z.number().positive().optional(),
      executor: z
        .enum(["local", "rabbitmq"])
        .default("local")
        .describe(
          "Where a stage's work units run: this process (local) or workers over RabbitMQ (`tile-compile worker`); the output bytes are the same",
        ),
      rabbitmq: z
        .strictObject({
          url: z
            .string()
            .regex(/^amqps?:\/\//, "expected amqp://user:password@host:5672/vhost")
            .optional()
            .describe("Broker URL; default: the TILE_COMPILE_BROKER environment variable (keeps the password out of the file)"),
          data: z
            .string()
            .regex(/^((file|s3):\/\/|\/)/, "expected file:///shared/folder, an absolute path or s3://bucket/prefix")
            .describe("Shared store for pixel data: a folder at the same path on every machine (file://) or an S3/MinIO bucket (s3://)"),
          s3: z
            .strictObject({
              endpoint: z.string().url().optional().describe("S3 endpoint (MinIO, s3rver); default: AWS"),
              region: z.string().optional(),
              force_path_style: z.boolean().optional().describe("Path-style addressing; default true when an endpoint is given"),
            })
            .optional()
            .describe(
              "Credentials come from the AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE), never from this file",
            ),
          parallelism: z
            .number()
            .int()
            .positive()
            .default(16)
            .describe("Units a stage splits into at least (bands of rows), so every worker has work"),
          window: z.number().int().positive().default(32).describe("Units published ahead of the one the stage waits for"),
          orphan_after_seconds: z
            .number()
            .int()
            .positive()
            .default(600)
            .describe(
              "A killed master's queues are deleted after this long unused; workers then drop its units (keep it above a broker outage you want runs to survive)",
            ),
        })
        .optional(),
    })
    .refine((r) => r.executor !== "rabbitmq" || r.rabbitmq !== undefined, {
      message: "runtime.executor: rabbitmq needs runtime.rabbitmq.data (file:///shared/folder or s3://bucket/prefix)",
      path: ["rabbitmq"],
    })
    .default({ threads: "auto", memory_budget: "4GiB", executor: "local" }),
  synthetic: z
    .strictObject({
      frames_min: z.number().int().positive().default(15).describe("Fewest synthetic frames (states) a full-mode TBQR run writes"),
      frames_max: z.number().int().positive().default(30).describe("Most synthetic frames"),
      clustering: z
        .strictObject({
          cluster_count_range: z
            .tuple([z.number().int().positive(), z.number().int().positive()])
            .default([5, 30])
            .describe("K = clip(⌊N/10⌋, low, high), then kept within [frames_min, frames_max]"),
        })
        .default({ cluster_count_range: [5, 30] }),
    })
    .refine((s) => s.frames_max >= s.frames_min, { message: "synthetic.frames_max must be ≥ synthetic.frames_min", path: ["frames_max"] })
    .refine((s) => s.clustering.cluster_count_range[1] >= s.clustering.cluster_count_range[0], {
      message: "cluster_count_range must be [low, high] with high ≥ low",
      path: ["clustering", "cluster_count_range"],
    })
    .default({ frames_min: 15, frames_max: 30, clustering: { cluster_count_range: [5, 30] } }),
  validation: z
    .strictObject({
      min_fwhm_improvement_percent: z
        .number()
        .default(5)
        .describe("TBQR must make stars at least this much sharper than a plain mean of the same frames"),
      max_background_rms_increase_percent: z
        .number()
        .min(0)
        .default(10)
        .describe(
          "Largest background-noise increase over a plain mean (the reference's 0 would fail every weighted stack; our κ rule spends up to reconstruction.noise_budget)",
        ),
      min_tile_weight_variance: z
        .number()
        .min(0)
        .default(0.05)
        .describe(
          "Spread of the weights: mean over tiles of Var_f(W)/mean² (0 = equal weights, TBQR has nothing to do; budget² − 1 = 0.1025 where the default noise budget binds on frames of equal noise)",
        ),
      require_no_tile_pattern: z
        .boolean()
        .default(true)
        .describe("Fail on seams: Sobel line mean at tile boundaries vs ±2 px, worst ≥ 1.5 or p95 ≥ 1.25"),
    })
    .default({
      min_fwhm_improvement_percent: 5,
      max_background_rms_increase_percent: 10,
      min_tile_weight_variance: 0.05,
      require_no_tile_pattern: true,
    }),
  pipeline: z
    .strictObject({
      abort_on_fail: z
        .boolean()
        .default(true)
        .describe("A failed validation fails the stage (no result written); false keeps the result with a warning"),
    })
    .default({ abort_on_fail: true }),
  engine_options: z
    .record(z.string(), z.record(z.string(), z.unknown()))
    .default({})
    .describe("Per-engine option blocks, validated by each engine's optionsSchema"),
});

/** tile_compile.yaml as written (defaults optional). */
export type TileCompileConfigInput = z.input<typeof configSchema>;
/** tile_compile.yaml after parsing and defaults. */
export type TileCompileConfig = z.output<typeof configSchema>;

/** The JSON Schema of tile_compile.yaml (draft 2020-12), for editors. */
export function configJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(configSchema, { io: "input", unrepresentable: "any" }) as Record<string, unknown>;
  return { $id: "https://tile-compile.dev/schema/tile_compile.json", title: "tile_compile.yaml", ...schema };
}
