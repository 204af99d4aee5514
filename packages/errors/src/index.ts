/**
 * Typed errors. Every error tile-compile raises is a `TileCompileError` carrying a stable `code` from
 * `catalog.ts`, a `hint`, structured `details` and an optional `cause`. Subclasses exist only where
 * callers need to tell errors apart by class (engine loading fails in four distinct ways; see STYLE.md §5).
 */
import { errorCatalog, type ErrorCode, type ErrorDetails } from "./catalog.js";

export { errorCatalog, type ErrorCode, type ErrorDetails, type CatalogEntry } from "./catalog.js";

export class TileCompileError extends Error {
  override name = "TileCompileError";
  readonly code: ErrorCode;
  readonly hint: string;
  readonly details: ErrorDetails;
  readonly title: string;
  readonly exitCode: 78 | 1;

  constructor(code: ErrorCode, details: ErrorDetails = {}, options?: { cause?: unknown }) {
    const entry = errorCatalog[code];
    super(entry.message(details), options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.title = entry.title;
    this.hint = entry.hint(details);
    this.details = details;
    this.exitCode = entry.exitCode;
  }

  /** A JSON-friendly view for logs and `--json` output. */
  toJSON(): Record<string, unknown> {
    return { name: this.name, code: this.code, title: this.title, message: this.message, hint: this.hint, details: this.details };
  }
}

export class ConfigError extends TileCompileError {
  override name = "ConfigError";
}
export class EngineNotFoundError extends TileCompileError {
  override name = "EngineNotFoundError";
}
export class EngineLoadError extends TileCompileError {
  override name = "EngineLoadError";
}
export class EngineContractError extends TileCompileError {
  override name = "EngineContractError";
}
export class EngineVersionError extends TileCompileError {
  override name = "EngineVersionError";
}
export class CapabilityError extends TileCompileError {
  override name = "CapabilityError";
}
export class FitsError extends TileCompileError {
  override name = "FitsError";
}
export class StageError extends TileCompileError {
  override name = "StageError";
}
export class ExternalToolError extends TileCompileError {
  override name = "ExternalToolError";
}
export class NativeBindingError extends TileCompileError {
  override name = "NativeBindingError";
}

/** True for the DOMException/Error raised by an aborted AbortSignal (never a TileCompileError). */
export function isAbortError(error: unknown): boolean {
  return typeof error === "object" && error !== null && (error as { name?: unknown }).name === "AbortError";
}

/** Exit code for any thrown value: 130 when cancelled, the catalogue's code for ours, 1 otherwise. */
export function exitCodeOf(error: unknown): number {
  if (isAbortError(error)) return 130;
  if (error instanceof TileCompileError) return error.exitCode;
  return 1;
}

/** Build an error of the right class for a code (used where the class does not matter to callers). */
export function tcError(code: ErrorCode, details: ErrorDetails, options?: { cause?: unknown }): TileCompileError {
  return new TileCompileError(code, details, options);
}

/** System error codes that are faults of the file system or the machine, never a verdict on one frame. */
const IO_FAULT_CODES = new Set([
  "ENOSPC",
  "EDQUOT",
  "EIO",
  "EROFS",
  "EACCES",
  "EPERM",
  "EMFILE",
  "ENFILE",
  "ENOMEM",
  "EBUSY",
  "ENOENT",
  "ESTALE",
  "ENOTDIR",
  "ELOOP",
  "EFBIG",
]);

/**
 * True when `error` is an I/O fault (a full disk, a read-only or vanished file, no permission…): the
 * stage must fail with it, nothing may be checkpointed as finished, and no frame may be rejected for it.
 * Only measurement failures (too few stars, no match, a damaged FITS file) are per-frame verdicts.
 */
export function isIoFault(error: unknown): boolean {
  for (let e = error as { code?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 4; e = e.cause as typeof e, depth++) {
    if (e instanceof TileCompileError && e.code === "TC_IO") return true;
    if (typeof e.code === "string" && IO_FAULT_CODES.has(e.code)) return true;
  }
  return false;
}

/** The error to rethrow for an I/O fault: the TC_IO error itself, or one naming the path and the cause. */
export function ioFault(error: unknown, op: string, file: string): TileCompileError {
  if (error instanceof TileCompileError && error.code === "TC_IO") return error;
  return new TileCompileError("TC_IO", { op, file, reason: (error as Error).message }, { cause: error });
}
