/**
 * The `tile-compile` command line (commander). `runCli` returns the exit code instead of exiting, so
 * tests call it in-process: 0 ok, 78 configuration error, 130 cancelled, 1 anything else.
 */
import { createRequire } from "node:module";
import { resolve } from "node:path";
import { Command, CommanderError } from "commander";
import { exitCodeOf, ioFault, isIoFault, loadConfig, TileCompileError } from "@tile-compile/core";
import { demoCommand } from "./commands/demo.js";
import { enginesCommand } from "./commands/engines.js";
import { scanCommand } from "./commands/scan.js";
import { stackCommand } from "./commands/stack.js";
import { registerCommand } from "./commands/register.js";
import { runCommand, validateCommand } from "./commands/job.js";
import { reconstructCommand } from "./commands/reconstruct.js";
import { workerCommand, type WorkerCommandOptions } from "./commands/worker.js";
import { formatError, processIo, type Io } from "./output.js";

const pkg = createRequire(import.meta.url)("../package.json") as { version: string };

export interface CliOptions {
  io?: Io;
  cwd?: string;
  /** The run's AbortSignal; main.ts wires SIGINT to it. */
  signal?: AbortSignal;
}

interface RegisterOptionsCli {
  out?: string;
  engine?: string;
  reference?: string;
  transform?: string;
  json?: boolean;
  dryRun?: boolean;
  compare?: string;
}

export async function runCli(argv: string[], options: CliOptions = {}): Promise<number> {
  const io = options.io ?? processIo;
  const cwd = options.cwd ?? process.cwd();
  const signal = options.signal ?? new AbortController().signal;
  let exitCode = 0;
  const program = new Command("tile-compile")
    .description("Calibrated, registered, quality-weighted deep-sky stacks from raw FITS subframes")
    .version(pkg.version, "-V, --version")
    .option("-c, --config <file>", "tile_compile.yaml to use (default: searched from the current folder up to the project root)")
    .option("--verbose", "debug output on stderr")
    .showHelpAfterError("(run tile-compile --help for usage)")
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) });

  const config = () => {
    const file = program.opts<{ config?: string }>().config;
    return loadConfig({ cwd, ...(file ? { file } : {}) });
  };

  program
    .command("scan")
    .description("List every FITS file under the given files/folders (headers only), grouped by type, object, filter and exposure")
    .argument("<paths...>", "FITS files or folders (searched recursively)")
    .option("--json", "machine-readable output")
    .action(async (paths: string[], o: { json?: boolean }) => {
      exitCode = await scanCommand(paths, o, io, signal, cwd);
    });

  program
    .command("engines")
    .description("List built-in and installed engines with their capabilities (read from package.json manifests; nothing is executed)")
    .option("--json", "machine-readable output")
    .action(async (o: { json?: boolean }) => {
      const loaded = await config();
      exitCode = enginesCommand(loaded, cwd, o, io);
    });

  program
    .command("stack")
    .description("Stack frames through the configured stacking engine (stacking.engine / stacking.method)")
    .argument("<frames...>", "FITS files or folders")
    .requiredOption("-o, --out <file>", "output FITS file")
    .option("-m, --method <method>", "stacking method (default: stacking.method of tile_compile.yaml)")
    .option("-e, --engine <engine>", "engine providing the method (default: stacking.engine, or the only provider)")
    .option(
      "--transforms <file>",
      "stack the calibrated (unregistered) frames with their transforms from this transforms.json (tile-compile register, or a job's registered/<group>/), warping each band as it is read: no registered frames needed",
    )
    .option("--drizzle <scale>", "drizzle onto a grid SCALE times finer (1, 1.5, 2, 3; needs --transforms); writes OUT_coverage.fit too")
    .option("--pixfrac <f>", "drizzle drop size, a fraction of an input pixel (default: stacking.drizzle.pixfrac, else 0.8)")
    .option("--json", "machine-readable summary")
    .option("--dry-run", "print the plan (capability, engine, frames, output) and stack nothing")
    .action(
      async (
        frames: string[],
        o: {
          out: string;
          method?: string;
          engine?: string;
          transforms?: string;
          drizzle?: string;
          pixfrac?: string;
          json?: boolean;
          dryRun?: boolean;
        },
      ) => {
        const loaded = await config();
        for (const w of loaded.warnings) io.err(`warning: ${w}`);
        exitCode = await stackCommand(
          frames,
          { ...o, verbose: Boolean(program.opts<{ verbose?: boolean }>().verbose) },
          loaded,
          io,
          signal,
          cwd,
        );
      },
    );

  program
    .command("register")
    .description("Register frames onto a reference (registration.engine: relative, wcs_anchor, siril) and write transforms.json")
    .argument("<frames...>", "FITS files or folders")
    .option("-o, --out <dir>", "output folder (default: registration.output_dir)")
    .option("-e, --engine <method>", "registration method: relative | wcs_anchor | siril (default: registration.engine)")
    .option("-r, --reference <ref>", "auto, a 0-based frame index, or a path (default: registration.reference)")
    .option("-t, --transform <model>", "shift | similarity | affine | homography (relative; default similarity)")
    .option("--json", "machine-readable summary (the transforms.json document)")
    .option("--dry-run", "print the plan (capability, engine, frames, output folder) and register nothing")
    .option(
      "--compare <method>",
      "also register with this method (siril, wcs_anchor, relative) onto the same reference and report per-frame agreement at the corners and which one the pixels favour",
    )
    .action(async (frames: string[], o: RegisterOptionsCli) => {
      const loaded = await config();
      for (const w of loaded.warnings) io.err(`warning: ${w}`);
      exitCode = await registerCommand(
        frames,
        { ...o, verbose: Boolean(program.opts<{ verbose?: boolean }>().verbose) },
        loaded,
        io,
        signal,
        cwd,
      );
    });

  program
    .command("validate")
    .description("Check a job file: scan light headers (no pixels), match calibration, list masters to build; writes nothing")
    .argument("<job>", "job file (.json or .yaml)")
    .option("--json", "machine-readable plan")
    .action(async (job: string, o: { json?: boolean }) => {
      const loaded = await config();
      exitCode = await validateCommand(
        resolve(cwd, job),
        { ...o, verbose: Boolean(program.opts<{ verbose?: boolean }>().verbose) },
        loaded,
        io,
        signal,
      );
    });

  program
    .command("run")
    .description("Run a job: calibrate → register → stack per (filter, exposure) → compose → stretch; resumes finished steps")
    .argument("<job>", "job file (.json or .yaml)")
    .option(
      "-s, --stage <stage>",
      "run up to this stage: calibrate, register, stack, compose, stretch or all (seed names: preprocess = stack, validate, …)",
      "all",
    )
    .option("--dry-run", "print the plan (every master to build or reuse, and why) and write nothing")
    .option("--validate", "only validate the job (the same as `tile-compile validate JOB`)")
    .action(async (job: string, o: { stage?: string; dryRun?: boolean; validate?: boolean }) => {
      const loaded = await config();
      for (const w of loaded.warnings) io.err(`warning: ${w}`);
      exitCode = await runCommand(
        resolve(cwd, job),
        { ...o, verbose: Boolean(program.opts<{ verbose?: boolean }>().verbose) },
        loaded,
        io,
        signal,
        cwd,
      );
    });

  program
    .command("reconstruct")
    .description("Tile-based quality reconstruction (TBQR) of a folder of frames: register, reconstruct, write stacked.fit and artifacts")
    .argument("<frames-dir>", "folder of (calibrated) frames")
    .option("-o, --out <dir>", "output folder", "tbqr-out")
    .option("--emergency", "reconstruct sets below assumptions.frames_min (reduced mode, no clustering)")
    .option("--dry-run", "print the plan (registration and TBQR stages, engines, outputs) and run nothing")
    .action(async (dir: string, o: { out?: string; emergency?: boolean; dryRun?: boolean }) => {
      const loaded = await config();
      for (const w of loaded.warnings) io.err(`warning: ${w}`);
      exitCode = await reconstructCommand(dir, o, loaded, io, signal, cwd);
    });

  program
    .command("worker")
    .description("Run work units of distributed runs (runtime.executor: rabbitmq) from a RabbitMQ broker until interrupted")
    .option("--broker <url>", "amqp://user:password@host:5672/vhost (default: TILE_COMPILE_BROKER)")
    .option("--concurrency <n>", "units run at once", "1")
    .option("--threads <n>", "kernel threads per unit (default: cores / concurrency)")
    .option("--name <name>", "shown in the master's run.json (default: host:pid)")
    .option("--s3-endpoint <url>", "S3/MinIO endpoint for s3:// stores (credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)")
    .option("--s3-region <region>", "S3 region")
    .option(
      "--engine <pkg-or-path>",
      "also run the tasks of this engine (a third-party engine's stages on workers); repeatable",
      (v: string, acc: string[] = []) => [...acc, v],
    )
    .action(async (o: WorkerCommandOptions) => {
      exitCode = await workerCommand({ ...o, verbose: Boolean(program.opts<{ verbose?: boolean }>().verbose) }, io, signal);
    });

  program
    .command("demo")
    .description("Generate a seeded demo data set and process it with the built-in engines")
    .argument("[dir]", "folder for the data set and outputs", "tile-compile-demo")
    .action(async (dir: string) => {
      exitCode = await demoCommand(dir, io, signal, cwd);
    });

  try {
    await program.parseAsync(argv, { from: argv === process.argv ? "node" : "user" });
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version "fail" with exit code 0.
      return error.exitCode === 0 ? 0 : 1;
    }
    // A raw file-system error that escaped a coded path still reaches the user coded, with its path.
    const e = error as { code?: string; path?: string; syscall?: string };
    const coded =
      !(error instanceof TileCompileError) && isIoFault(error) && typeof e.path === "string"
        ? ioFault(error, e.syscall ?? "access", e.path)
        : error;
    io.err(formatError(coded));
    return exitCodeOf(coded);
  }
}
