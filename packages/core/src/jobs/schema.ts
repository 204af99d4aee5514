/**
 * The job file: the user's seed format (seeds/job-file-system.md) exactly, in JSON or YAML. One zod
 * schema is the source of truth; `pnpm schema` writes its JSON Schema (`job.schema.json`) for editors.
 * Every block is strict: an unknown key is an error, reported with all other problems of the file.
 */
import { z } from "zod";

/** `YYYY_MM_DD` as in the seed (underscores), a real calendar date. */
export const jobDate = z
  .string()
  .regex(/^\d{4}_\d{2}_\d{2}$/, "expected a date as YYYY_MM_DD (underscores), e.g. 2024_01_15")
  .refine((v) => {
    const [y, m, d] = v.split("_").map(Number) as [number, number, number];
    const t = new Date(Date.UTC(y, m - 1, d));
    return t.getUTCFullYear() === y && t.getUTCMonth() === m - 1 && t.getUTCDate() === d;
  }, "not a calendar date");

export const JOB_TYPES = ["LRGB", "RGB", "SHO", "HOO", "LSHO", "LHOO", "MONO"] as const;

const folderList = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]);

export const jobSchema = z.strictObject({
  $schema: z.string().optional(),
  name: z
    .string()
    .min(1)
    .regex(/^[^/\\]+$/, "a name, not a path")
    .describe("Job name; used in output file names"),
  type: z.enum(JOB_TYPES).describe("Composition: LRGB, RGB, SHO, HOO, LSHO, LHOO or MONO (no composition)"),
  calibration: z
    .strictObject({
      bias: jobDate.optional().describe("Date of the bias set (calibration/raw/biases/<date>/ or masters/biases/bias_<date>.fit)"),
      darks: jobDate.optional().describe("Date of the dark sets (calibration/raw/darks/<date>_<temp>/<exposure>/)"),
      flats: jobDate.optional().describe("Date of the flat set (calibration/raw/flats/<date>/<filter>/)"),
      offset: z
        .number()
        .nonnegative()
        .optional()
        .describe(
          "The camera's pedestal in ADU, subtracted as the offset when no bias or usable dark supplies it (e.g. a CMOS camera's offset × gain factor, measured from a bias)",
        ),
    })
    .optional()
    .describe("Calibration sets by date; omitted kinds are not applied"),
  lights: z
    .record(z.string().min(1), folderList)
    .refine((r) => Object.keys(r).length > 0, "at least one filter with light folders")
    .describe("Filter → light folder(s), relative to the base directory; several folders = several nights or exposures"),
  output: z
    .string()
    .min(1)
    .optional()
    .describe("Output folder relative to the base directory (default: <first light folder's object>/processed)"),
  options: z
    .strictObject({
      fwhm_filter: z.number().positive().optional().describe("Drop frames whose FWHM exceeds this many times the median"),
      temp_tolerance: z.number().nonnegative().optional().describe("°C between a light and its dark (default 2, inclusive)"),
      exposure_tolerance: z.number().nonnegative().optional().describe("Seconds between a light and its dark (default 0.5)"),
      dark_scaling: z
        .boolean()
        .optional()
        .describe("Scale the dark by the exposure ratio when no dark of the right exposure exists (default false)"),
      cosmetic: z.boolean().optional().describe("Correct hot and cold pixels found in the master dark (default true)"),
      missing_temperature: z
        .enum(["error", "ignore"])
        .optional()
        .describe("When a light or dark has no temperature keyword (default error)"),
    })
    .optional(),
});

export type JobFile = z.infer<typeof jobSchema>;

/** JSON Schema of the job file (shipped as `@tile-compile/core/job.schema.json`, written by `pnpm schema`). */
export function jobJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(jobSchema, { io: "input", unrepresentable: "any" }) as Record<string, unknown>;
  return { $id: "https://tile-compile.dev/schema/job.json", title: "tile-compile job file", ...schema };
}
