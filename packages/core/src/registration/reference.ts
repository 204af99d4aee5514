/**
 * Choosing the registration reference (or anchor) frame, shared by every registration method:
 * `registration.reference` as an index, a path (or file name), or `auto` — the frame with the highest
 * quality figure Q = star count / median FWHM among frames without a trail and with at least 60 % of the
 * median star count; a reference an earlier run into the same output folder recorded (its
 * `transforms.json`) is kept while that frame is still among the inputs.
 */
import { existsSync, readFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { TileCompileError } from "../errors/index.js";
import type { FrameRef, RegistrationInput } from "../kernel/contracts.js";

/**
 * The reference index when it is fixed before any frame is measured: an index, a path (or file name), or
 * with `auto` the reference an earlier run into the same output folder recorded (still among the inputs).
 * Undefined when `auto` has to pick the best frame. Invalid references are left to `chooseReference`.
 */
export function knownReference(input: RegistrationInput): number | undefined {
  const frames = input.frames;
  const ref = input.reference;
  if (typeof ref === "number") return ref >= 0 && ref < frames.length ? ref : undefined;
  if (ref !== "auto") {
    const i = indexOfFrame(frames, ref);
    return i >= 0 ? i : undefined;
  }
  return previousReference(input);
}

/** Index of the frame a `registration.reference` path or file name names, or −1. */
function indexOfFrame(frames: readonly FrameRef[], ref: string): number {
  const want = resolve(ref);
  return frames.findIndex((f) => resolve(f.path) === want || basename(f.path) === ref);
}

/** The reference recorded by an earlier run into the same folder, if it is still among the inputs. */
function previousReference(input: RegistrationInput): number | undefined {
  const previous = join(input.outputDir, "transforms.json");
  if (!existsSync(previous)) return undefined;
  try {
    const prev = JSON.parse(readFileSync(previous, "utf8")) as { reference?: string };
    const i = input.frames.findIndex((f) => prev.reference !== undefined && resolve(f.path) === resolve(prev.reference));
    return i >= 0 ? i : undefined;
  } catch {
    // An unreadable transforms.json is simply not used.
    return undefined;
  }
}

/** The reference/anchor frame index per `registration.reference` (see the module comment). */
export function chooseReference(
  input: RegistrationInput,
  found: readonly { quality: number; stars: readonly unknown[]; fwhm?: number; trail?: boolean; error?: string }[],
  explain?: (reason: string) => void,
): number {
  const frames = input.frames;
  const ref = input.reference;
  const usable = (i: number) => !found[i]!.error && found[i]!.stars.length >= 3;
  if (typeof ref === "number") {
    if (ref < 0 || ref >= frames.length)
      throw new TileCompileError("TC_CONFIG_INVALID", {
        file: "tile_compile.yaml",
        issues: [`registration.reference: frame index ${ref} is outside 0..${frames.length - 1}`],
      });
    if (!usable(ref))
      throw new TileCompileError("TC_INPUT_INVALID", {
        input: frames[ref]!.path,
        reason: `the reference frame cannot be used: ${found[ref]!.error ?? "too few stars"}`,
      });
    explain?.(`registration.reference: ${ref}`);
    return ref;
  }
  if (ref !== "auto") {
    const i = indexOfFrame(frames, ref);
    if (i < 0)
      throw new TileCompileError("TC_CONFIG_INVALID", {
        file: "tile_compile.yaml",
        issues: [`registration.reference: ${ref} is not one of the frames to register`],
      });
    if (!usable(i))
      throw new TileCompileError("TC_INPUT_INVALID", {
        input: frames[i]!.path,
        reason: `the reference frame cannot be used: ${found[i]!.error ?? "too few stars"}`,
      });
    explain?.(`registration.reference: ${basename(ref)}`);
    return i;
  }
  // Keep the reference of an earlier run into the same folder (Siril silently changes it).
  const prev = previousReference(input);
  if (prev !== undefined && usable(prev)) {
    explain?.("the reference of the earlier run into this folder (kept so earlier registered frames stay valid)");
    return prev;
  }
  // auto: among frames without a trail and with at least 60 % of the median star count (a frame through
  // clouds or haze loses its faint stars), the most stars per pixel of FWHM. The star lists are cleaned
  // (clean.ts), so trail fragments and nebula knots count for nothing.
  const all = frames.map((_, i) => i).filter(usable);
  if (all.length === 0)
    throw new TileCompileError("TC_INPUT_INVALID", {
      input: frames.map((f) => basename(f.path)).join(", "),
      reason: "no frame has enough stars to serve as the registration reference",
    });
  const noTrail = all.filter((i) => !found[i]!.trail);
  const pool = noTrail.length ? noTrail : all;
  const counts = pool.map((i) => found[i]!.stars.length).sort((a, b) => a - b);
  const medCount = counts[counts.length >> 1]!;
  const clear = pool.filter((i) => found[i]!.stars.length >= 0.6 * medCount);
  const cands = clear.length ? clear : pool;
  let best = cands[0]!;
  for (const i of cands) if (found[i]!.quality > found[best]!.quality) best = i;
  const b = found[best]!;
  const left = [
    all.length - noTrail.length ? `${all.length - noTrail.length} with a satellite trail` : "",
    pool.length - clear.length ? `${pool.length - clear.length} with under 60 % of the median ${medCount} stars (clouds?)` : "",
  ].filter(Boolean);
  explain?.(
    `auto: the most stars per px of FWHM (${b.stars.length} stars, FWHM ${(b.fwhm ?? NaN).toFixed(2)} px) of ${cands.length} candidate frames${left.length ? `; not candidates: ${left.join(", ")}` : ""}`,
  );
  return best;
}
