/**
 * The error catalogue: every error tile-compile raises has an entry here, with a stable `code`, a title,
 * a message built from structured details, a hint that says what to do next, and the process exit code
 * the CLI uses (78 = configuration, sysexits EX_CONFIG; 1 = anything else). Cancellation is not in this
 * catalogue: it stays a DOMException `AbortError` and exits 130.
 *
 * `scripts/write-docs.mjs` renders this table into `docs/errors.md`; codes are never renamed or reused.
 */

/** Details are free-form but every entry documents which keys it reads. */
export type ErrorDetails = Record<string, unknown>;

export interface CatalogEntry {
  /** Short human title, shown first. */
  readonly title: string;
  /** Message from details. Names the file and the field whenever there is one. */
  readonly message: (d: ErrorDetails) => string;
  /** What to do next. */
  readonly hint: (d: ErrorDetails) => string;
  /** 78 for configuration problems, 1 otherwise. */
  readonly exitCode: 78 | 1;
}

const s = (v: unknown): string => (v === undefined ? "?" : String(v));
const list = (v: unknown, sep = ", "): string => (Array.isArray(v) ? v.join(sep) : "?");

export const errorCatalog = {
  TC_CONFIG_INVALID: {
    title: "Invalid configuration",
    message: (d) =>
      `${s(d.file)} has ${Array.isArray(d.issues) ? d.issues.length : "some"} problem(s):\n` +
      (Array.isArray(d.issues) ? (d.issues as string[]).map((i) => `  - ${i}`).join("\n") : ""),
    hint: () =>
      "Fix every field listed above. The JSON Schema in @tile-compile/core/schema.json gives editors completion and checks; add `# yaml-language-server: $schema=./node_modules/@tile-compile/core/schema.json` at the top of the file.",
    exitCode: 78,
  },
  TC_CONFIG_NOT_FOUND: {
    title: "Configuration file not found",
    message: (d) => `The configuration file ${s(d.file)} does not exist or cannot be read.`,
    hint: () => "Check the --config path, or run without --config to search for tile_compile.yaml from the current folder upwards.",
    exitCode: 78,
  },
  TC_ENGINE_NOT_FOUND: {
    title: "Engine not found",
    message: (d) =>
      `The engine "${s(d.engine)}" named in ${s(d.configFile)} could not be resolved as package "${s(d.packageName)}" from ${s(d.searched)}.`,
    hint: (d) =>
      String(d.engine).startsWith(".") || String(d.engine).startsWith("/")
        ? "Relative engine paths are resolved from the config file's folder, then the current folder. Check the path."
        : `Install it next to your configuration: pnpm add ${s(d.packageName)}   (or npm install ${s(d.packageName)})`,
    exitCode: 78,
  },
  TC_ENGINE_LOAD: {
    title: "Engine failed to load",
    message: (d) => `Importing the engine "${s(d.engine)}" (${s(d.entry)}) threw: ${s(d.reason)}`,
    hint: () =>
      "The engine's own code failed while loading; the original error is attached as `cause`. Reinstall it or report it to its author.",
    exitCode: 78,
  },
  TC_ENGINE_CONTRACT: {
    title: "Engine does not match the contract",
    message: (d) =>
      `The engine "${s(d.engine)}" does not match the tile-compile engine contract:\n  - ${(d.problems as string[] | undefined)?.join("\n  - ") ?? ""}`,
    hint: () =>
      "An engine module's default export must be the object returned by defineEngine() from @tile-compile/core. Run runEngineConformance() from @tile-compile/core/testing on it.",
    exitCode: 78,
  },
  TC_ENGINE_VERSION: {
    title: "Unsupported engine API version",
    message: (d) => `The engine "${s(d.engine)}" declares apiVersion ${s(d.apiVersion)}; this core supports ${s(d.supported)}.`,
    hint: () => "Install a version of the engine built for this @tile-compile/core, or upgrade @tile-compile/core.",
    exitCode: 78,
  },
  TC_ENGINE_DUPLICATE: {
    title: "Engine loaded twice",
    message: (d) => `Two engines are named "${s(d.engine)}" (${s(d.sources)}).`,
    hint: () => "List each engine once in `engines:` of tile_compile.yaml.",
    exitCode: 78,
  },
  TC_TASK_CONFLICT: {
    title: "Two engines define the same task",
    message: (d) => `The work-unit task "${s(d.task)}" is defined by both ${s(d.engines)}; a worker could not tell which one a unit means.`,
    hint: () =>
      "Give the tasks of a third-party engine names of their own (prefix them with the package name), or start the worker without one of the engines.",
    exitCode: 78,
  },
  TC_CAPABILITY_MISSING: {
    title: "Capability not provided",
    message: (d) =>
      `The configuration needs "${s(d.capability)}" (${s(d.field)})` +
      (d.engine ? `, but the engine "${s(d.engine)}" does not provide it.` : ", but no loaded engine provides it."),
    hint: (d) =>
      Array.isArray(d.offers) && d.offers.length > 0
        ? `The engine "${s(d.engine)}" provides ${list(
            d.offers.map((m) => `${s(d.field)}: ${s(m)}`),
            " or ",
          )}; set ${s(d.field)} to one of these.` +
          (Array.isArray(d.providers) && d.providers.length > 0 ? ` Engines that provide "${s(d.capability)}": ${list(d.providers)}.` : "")
        : Array.isArray(d.providers) && d.providers.length > 0
          ? `Engines that provide it: ${list(d.providers)}. Select one in ${s(d.field)} or add it to \`engines:\`.`
          : "No installed engine provides it. Pick another method, or install an engine that provides it and list it in `engines:`.",
    exitCode: 78,
  },
  TC_CAPABILITY_AMBIGUOUS: {
    title: "Capability provided by more than one engine",
    message: (d) => `"${s(d.capability)}" is provided by ${list(d.providers, " and ")}, and ${s(d.field)} does not say which one to use.`,
    hint: (d) => `Set ${s(d.field)} to one of: ${list(d.providers)}.`,
    exitCode: 78,
  },
  TC_REGISTRY_FROZEN: {
    title: "Engine registry is frozen",
    message: (d) => `Engine "${s(d.engine)}" was registered after the run plan was made.`,
    hint: () => "Register every engine before planning: list it in `engines:` of tile_compile.yaml instead of registering it at run time.",
    exitCode: 1,
  },
  TC_FITS_INVALID: {
    title: "Invalid FITS file",
    message: (d) => `${s(d.file)}: ${s(d.reason)}` + (d.field ? ` (keyword ${s(d.field)})` : ""),
    hint: () =>
      "The file is not a valid FITS file. Check that it was copied completely; `fitsverify FILE` (Debian package fitsverify) gives a full report.",
    exitCode: 1,
  },
  TC_FITS_TRUNCATED: {
    title: "Truncated FITS file",
    message: (d) =>
      `${s(d.file)}: the header declares ${s(d.expected)} bytes of data (${s(d.field)}), but the file holds only ${s(d.actual)}.`,
    hint: () => "The file is incomplete (interrupted copy or capture). Copy it again from the source, or remove it from the set.",
    exitCode: 1,
  },
  TC_FITS_UNSUPPORTED: {
    title: "Unsupported FITS feature",
    message: (d) => `${s(d.file)}: ${s(d.reason)}` + (d.field ? ` (keyword ${s(d.field)})` : ""),
    hint: () => "Convert the file with `funpack` or `imcopy` (Debian package libcfitsio-bin) to a plain image and try again.",
    exitCode: 1,
  },
  TC_IO: {
    title: "File system error",
    message: (d) => `${s(d.op)} ${s(d.file)} failed: ${s(d.reason)}`,
    hint: () => "Check that the path exists, that you may read/write it, and that the disk is not full.",
    exitCode: 1,
  },
  TC_INPUT_INVALID: {
    title: "Invalid input",
    message: (d) => `${s(d.file ?? d.input)}: ${s(d.reason)}`,
    hint: (d) => (typeof d.hint === "string" ? d.hint : "Check the inputs named above."),
    exitCode: 1,
  },
  TC_STAGE_FAILED: {
    title: "Stage failed",
    message: (d) => `Stage ${s(d.stage)} (engine ${s(d.engine)}, method ${s(d.method)}) failed: ${s(d.reason)}`,
    hint: () => "The engine's error is attached as `cause`; nothing of this stage was written. Fix the cause and run again.",
    exitCode: 1,
  },
  TC_TOOL_FAILED: {
    title: "External tool failed",
    message: (d) =>
      `${s(d.command)} failed (exit code ${s(d.exitCode)}${d.signal ? `, signal ${s(d.signal)}` : ""}).` +
      (d.tail ? `\n--- last lines ---\n${s(d.tail)}` : ""),
    hint: (d) => (typeof d.hint === "string" ? d.hint : "See the tool's output above."),
    exitCode: 1,
  },
  TC_TOOL_MISSING: {
    title: "External tool not installed",
    message: (d) => `${s(d.tool)} was not found (looked in ${s(d.searched)}).`,
    hint: (d) => (typeof d.hint === "string" ? d.hint : "Install it, or set its path in tile_compile.yaml."),
    exitCode: 1,
  },
  TC_TOOL_TIMEOUT: {
    title: "External tool timed out",
    message: (d) => `${s(d.command)} ran longer than ${s(d.timeoutS)} s and was stopped.`,
    hint: (d) =>
      typeof d.hint === "string" ? d.hint : "Raise the engine's timeout_s in tile_compile.yaml, or look at the log tail for where it hung.",
    exitCode: 1,
  },
  TC_VALIDATION_FAILED: {
    title: "Validation failed",
    message: (d) => `${s(d.stage)} failed its validation checks: ${s(d.failures)}. The result was not written (see ${s(d.report)}).`,
    hint: () =>
      "The figures are in the report. Use another stacking method, relax the validation.* thresholds, or set pipeline.abort_on_fail: false to keep the result with a warning.",
    exitCode: 1,
  },
  TC_NATIVE_UNAVAILABLE: {
    title: "Native kernels unavailable",
    message: (d) => `The native recon backend could not be loaded: ${s(d.reason)}`,
    hint: () =>
      "Reinstall without --no-optional (npm may have dropped the platform package), build it with `pnpm --filter @tile-compile/recon-native build:native`, or set TILE_COMPILE_RECON=js to use the TypeScript backend.",
    exitCode: 1,
  },
  TC_JOB_INVALID: {
    title: "Invalid job",
    message: (d) =>
      `${s(d.file)} has ${Array.isArray(d.problems) ? d.problems.length : "some"} problem(s):\n` +
      (Array.isArray(d.problems) ? (d.problems as string[]).map((p) => `  - ${p}`).join("\n") : ""),
    hint: () =>
      "Fix every problem listed above (each names the file and the field); `tile-compile validate JOB` checks again without reading any pixels or writing anything.",
    exitCode: 78,
  },
  TC_STAGE_TIMEOUT: {
    title: "Stage timed out",
    message: (d) =>
      `The ${s(d.stage)} stage (${s(d.engine)}, ${s(d.method)}) ran longer than runtime.stage_timeout_seconds (${s(d.seconds)} s) and was stopped; nothing it was writing was kept.`,
    hint: () =>
      "Raise runtime.stage_timeout_seconds in tile_compile.yaml (or remove it), or give the stage fewer or smaller frames. Finished steps are reused when the job runs again.",
    exitCode: 1,
  },
  TC_RUN_LOCKED: {
    title: "Another run is using this output folder",
    message: (d) =>
      `${s(d.dir)} is locked by ${s(d.holder)} (its .tile-compile/lock): two runs of one job would overwrite each other's checkpoints.`,
    hint: (d) =>
      `Wait for process ${s(d.pid)} to finish, or stop it; a lock left by a process that no longer runs on this machine is taken over automatically. A lock from another machine (a shared folder) must be removed by hand once that run is over.`,
    exitCode: 1,
  },
  TC_CALIBRATION_NO_OFFSET: {
    title: "No offset source for flat-fielding",
    message: (d) => `${s(d.file)}: ${s(d.reason)}`,
    hint: () =>
      "Flat-fielding is only right after the offset (bias level / pedestal) is removed from the lights and the flats. Give one of: calibration.bias (a bias set), calibration.darks (darks of the lights' exposure, or darks at their temperature — the shortest serves as the offset), flat-darks (darks of the flats' exposure), or calibration.offset: <ADU> (the camera's pedestal). Or leave calibration.flats out.",
    exitCode: 78,
  },
  TC_CALIBRATION_CHECK: {
    title: "Calibration health check failed",
    message: (d) => `The calibration check "${s(d.check)}" failed: ${s(d.reason)}`,
    hint: (d) =>
      `${s(d.advice)} If you have checked the calibrated frames and accept this, relax the check by name in tile_compile.yaml: calibration: { checks: { ${s(d.check)}: warn } }. The figures are in run.json (stages.calibrate.health) and report.html.`,
    exitCode: 1,
  },
  TC_NATIVE_FAILED: {
    title: "Native kernel failed",
    message: (d) => `The native kernel ${s(d.kernel)} failed: ${s(d.reason)}`,
    hint: () =>
      "This is a bug in tile-compile; please report it with the command you ran. Set TILE_COMPILE_RECON=js to continue with the TypeScript backend.",
    exitCode: 1,
  },
  TC_UNIT_FAILED: {
    title: "Work unit failed",
    message: (d) =>
      `Work unit ${s(d.unit)} (${s(d.task)}) of run ${s(d.run)} failed after ${s(d.attempts)} attempt(s)${d.worker ? ` on worker ${s(d.worker)}` : ""}: ${s(d.reason)}. It is in the dead-letter queue ${s(d.queue)}; nothing was written.`,
    hint: (d) =>
      typeof d.hint === "string"
        ? d.hint
        : "The reason above comes from the worker. Run the same job with runtime.executor: local to reproduce it on one machine; inspect the unit with `rabbitmqadmin get queue=tile-compile.dead`.",
    exitCode: 1,
  },
  TC_BROKER_UNAVAILABLE: {
    title: "Message broker unavailable",
    message: (d) => `Could not reach the broker ${s(d.url)}${d.seconds !== undefined ? ` within ${s(d.seconds)} s` : ""}: ${s(d.reason)}`,
    hint: () =>
      "Check runtime.rabbitmq.url (amqp://user:password@host:5672/vhost), that rabbitmq-server runs and its port is reachable from here; the guest user only works on loopback.",
    exitCode: 1,
  },
  TC_DATA_REF_INVALID: {
    title: "Shared data reference invalid",
    message: (d) => `${s(d.ref)}: ${s(d.reason)}`,
    hint: () =>
      "Master and workers must see the same runtime.rabbitmq.data folder (same path on every machine) or the same S3 bucket; a checksum mismatch means the object was changed or truncated in transit.",
    exitCode: 1,
  },
} satisfies Record<string, CatalogEntry>;

/** A stable error code from the catalogue. */
export type ErrorCode = keyof typeof errorCatalog;
