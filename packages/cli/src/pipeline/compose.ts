/**
 * The job pipeline's image steps, after the stacks: blend each HDR filter's exposures, align the channel
 * stacks, flatten their background (`background.on: stacks`), compose the palette, stretch.
 */
import { existsSync } from "node:fs";
import { basename, join } from "node:path";
import {
  BUILTIN_PALETTES,
  colorBalanceFor,
  describeColorBalance,
  defineStep,
  paletteInputs,
  provenanceLine,
  readFitsHeader,
  TileCompileError,
  type ColorBalanceRecord,
  type Palette,
  type RunStep,
} from "@tile-compile/core";
import { engineId, identity, stampOf, type PipelineState, type StackRecord } from "./state.js";

/** The steps from the stacks to the final images (composition only when the job type and HDR allow it). */
export function imageSteps(s: PipelineState, stacks: StackRecord[]): RunStep[] {
  const job = s.plan.job!;
  const byFilter = new Map<string, StackRecord[]>();
  for (const x of stacks) byFilter.set(x.filter, [...(byFilter.get(x.filter) ?? []), x]);
  const hdr = [...byFilter.entries()].filter(([, l]) => l.length > 1);
  const steps: RunStep[] = [];
  if (job.type === "MONO") {
    s.result.compositionSkipped = "the job type is MONO (no composition)";
    s.toStretch = stacks.map((x) => x.path);
  } else if (hdr.length > 0 && !s.cfg.hdr.blend) {
    s.result.compositionSkipped = `HDR: ${hdr.map(([f, l]) => `${f} has ${l.map((x) => `${x.exposureSeconds} s`).join(" and ")} stacks`).join("; ")} — composition is skipped (set hdr.blend: true to blend the exposures); each stack is kept`;
    s.toStretch = stacks.map((x) => x.path);
  } else {
    // Blend each HDR filter's exposures into one stack, then compose as usual.
    for (const [filter, list] of hdr) {
      const { steps: blend, blended } = hdrSteps(s, filter, list);
      steps.push(...blend);
      byFilter.set(filter, [{ ...list[0]!, path: blended }]);
    }
    steps.push(...compositionSteps(s, byFilter));
  }
  if (s.upto >= 4 && s.stages.stretch) steps.push(...s.toStretch.map((input) => stretchStep(s, input)));
  return steps;
}

/** Register `images()` onto the first of them into `dir` (named like the inputs); `failure` says what could not be aligned. */
function alignStep(
  s: PipelineState,
  key: string,
  images: () => string[],
  dir: string,
  failure: (input: string) => string,
  done: (aligned: string[]) => void,
): RunStep {
  const reg = s.stages.registration();
  return defineStep({
    key,
    stage: reg,
    inputs: images(),
    outputs: [],
    writes: [dir],
    stamp: () => stampOf(identity(images()), JSON.stringify(s.cfg.registration), engineId(reg)),
    run: async (provider, ctx) => {
      const r = await provider.register(
        {
          frames: images().map((path) => ({ path })),
          reference: 0,
          outputDir: dir,
          filenamePattern: "{name}.fit",
          options: reg.options,
          history: [provenanceLine(reg)],
        },
        ctx,
      );
      const bad = r.frames.find((f) => f.error);
      if (bad)
        throw new TileCompileError("TC_STAGE_FAILED", {
          stage: "registration",
          engine: reg.engine.meta.name,
          method: reg.method,
          reason: `${failure(bad.input)}: ${bad.error}`,
        });
      const paths = r.frames.map((f) => f.output!);
      return { outputs: paths, value: paths };
    },
    reuse: (outputs) => outputs,
    done,
  });
}

/** One filter's exposures aligned (`hdr_registered/<filter>/`), then blended into `stack_<filter>_hdr.fit`. */
function hdrSteps(s: PipelineState, filter: string, list: StackRecord[]): { steps: RunStep[]; blended: string } {
  const sorted = [...list].sort((a, b) => b.exposureSeconds - a.exposureSeconds);
  const dir = join(s.out, "hdr_registered", filter);
  const blended = join(s.out, `stack_${filter}_hdr.fit`);
  const exposures = sorted.map((x) => `${x.exposureSeconds} s`).join(" + ");
  let aligned = sorted.map((x) => join(dir, basename(x.path)));
  const hdr = s.stages.hdr();
  const align = alignStep(
    s,
    `hdr ${filter}`,
    () => sorted.map((x) => x.path),
    dir,
    () => `the ${filter} exposures could not be aligned for the HDR blend`,
    (paths) => {
      aligned = paths;
    },
  );
  const blend = defineStep({
    key: `hdr ${filter} blend`,
    stage: hdr,
    inputs: aligned,
    outputs: [blended],
    stamp: () => stampOf(identity(aligned), engineId(hdr)),
    run: async (provider, ctx, [tmp]) => {
      const { scales = [] } = await provider.compose(
        {
          channels: Object.fromEntries(aligned.map((p, k) => [String(k), p])),
          palette: {},
          output: tmp!,
          options: hdr.options,
          history: [`HDR blend of ${exposures}`],
        },
        ctx,
      );
      const factors = `scale${scales.length > 1 ? "s" : ""} ${scales.map((x) => x.toFixed(3)).join(", ")}`;
      s.log(`HDR ${filter}: ${exposures} blended (${factors}) → ${basename(blended)}`);
      return { value: undefined };
    },
  });
  return { steps: [align, blend], blended };
}

/** The palette's channel stacks (aligned onto L, G or H when there are several), flattened when asked, composed. */
function compositionSteps(s: PipelineState, byFilter: Map<string, StackRecord[]>): RunStep[] {
  const paletteName = s.cfg.composition.palette ?? s.plan.job!.type;
  const palette: Palette | undefined = s.cfg.composition.palettes[paletteName] ?? BUILTIN_PALETTES[paletteName];
  if (!palette)
    throw new TileCompileError("TC_CONFIG_INVALID", {
      file: "tile_compile.yaml",
      issues: [
        `composition.palette: no palette "${paletteName}" (built-in: ${Object.keys(BUILTIN_PALETTES).join(", ")}; or define it under composition.palettes)`,
      ],
    });
  // Channel stacks: one per filter; a single 3-plane stack (one-shot colour) offers R, G, B itself — known
  // once it is stacked, so that case is settled when the composition runs.
  const lists = [...byFilter.values()];
  const single = byFilter.size === 1 && lists[0]!.length === 1 ? lists[0]![0]! : undefined;
  const paletteChannels = (paths: (filter: string) => string | undefined): Record<string, string> => {
    const channels: Record<string, string> = {};
    for (const c of paletteInputs(palette)) {
      const p = paths(c);
      if (!p)
        throw new TileCompileError("TC_INPUT_INVALID", {
          input: s.plan.jobFile,
          reason: `the ${paletteName} palette needs a ${c} stack; the job has ${[...byFilter.keys()].join(", ")}`,
        });
      channels[c] = p;
    }
    return channels;
  };
  s.channels = single ? { [single.filter]: single.path } : paletteChannels((c) => byFilter.get(c)?.[0]?.path);
  const steps: RunStep[] = [];
  const names = Object.keys(s.channels);
  if (!single && names.length > 1) {
    // Cross-register the channel stacks onto the first palette input (L when there is one).
    const refName = names.includes("L") ? "L" : names.includes("G") ? "G" : names.includes("H") ? "H" : names[0]!;
    const ordered = [refName, ...names.filter((n) => n !== refName)];
    steps.push(
      alignStep(
        s,
        "register stacks",
        () => ordered.map((n) => s.channels[n]!),
        join(s.out, "stacks_registered"),
        (input) => `the channel stack ${basename(input)} could not be aligned with ${refName}`,
        (aligned) => ordered.forEach((n, k) => (s.channels[n] = aligned[k]!)),
      ),
    );
  }
  if (s.stages.background && s.cfg.background.on === "stacks") steps.push(...names.map((n) => backgroundStackStep(s, n)));
  const composition = s.stages.composition!;
  const composed = join(s.out, `${s.plan.job!.name}_linear.fits`);
  steps.push(
    defineStep({
      key: "compose",
      stage: composition,
      inputs: Object.values(s.channels),
      outputs: [composed],
      stamp: () =>
        stampOf(
          identity(Object.values(s.channels)),
          JSON.stringify(palette),
          JSON.stringify(s.cfg.composition.color),
          engineId(composition),
        ),
      run: async (provider, ctx, [tmp]) => {
        if (single) {
          const path = s.channels[single.filter]!;
          s.channels =
            (await readFitsHeader(single.path)).channels === 3
              ? { RGB: path }
              : paletteChannels((c) => (c === single.filter ? path : undefined));
        }
        const { color } = await provider.compose(
          {
            channels: s.channels,
            palette,
            output: tmp!,
            options: composition.options,
            history: [provenanceLine(composition)],
            color: colorBalanceFor(s.cfg.composition.color, palette),
          },
          ctx,
        );
        s.log(`composed ${paletteName} → ${basename(composed)}`);
        if (color) s.log(`colour balance: ${describeColorBalance(color)}`);
        return { value: color, ...(color ? { info: color } : {}) };
      },
      reuse: (_outputs, info) => info as ColorBalanceRecord | undefined,
      done: (color) => {
        s.result.composed = composed;
        if (color) s.result.color = color;
      },
    }),
  );
  s.toStretch = [composed];
  return steps;
}

/** A channel stack with a smooth sky model removed (`background.on: stacks`), into `background_stacks/`. */
function backgroundStackStep(s: PipelineState, name: string): RunStep {
  const bg = s.stages.background!;
  const target = join(s.out, "background_stacks", basename(s.channels[name]!));
  return defineStep({
    key: `background ${basename(s.channels[name]!)}`,
    stage: bg,
    inputs: [s.channels[name]!],
    outputs: [target],
    stamp: () => stampOf(identity([s.channels[name]!]), JSON.stringify(s.cfg.background), engineId(bg)),
    run: async (provider, ctx, tmp) => {
      await provider.extract(
        { images: [{ path: s.channels[name]! }], outputs: tmp, options: bg.options, history: [provenanceLine(bg)] },
        ctx,
      );
      return { value: undefined };
    },
    done: () => {
      s.channels[name] = target;
    },
  });
}

/** The stretched image and its PNG previews beside it (`<name>_stretched.fits`, `.png`, `_16bit.png`). */
function stretchStep(s: PipelineState, input: string): RunStep {
  const sr = s.stages.stretch!;
  const output = input.replace(/(_linear)?\.(fits?|fit)$/i, "_stretched.fits");
  return defineStep({
    key: `stretch ${basename(input)}`,
    stage: sr,
    inputs: [input],
    outputs: [output],
    stamp: () => stampOf(identity([input]), sr.method, engineId(sr)),
    run: async (provider, ctx, [tmp]) => {
      await provider.stretch(
        { input, output: tmp!, options: { ...sr.options, previewBase: output.replace(/\.fits$/, "") }, history: [provenanceLine(sr)] },
        ctx,
      );
      const previews = [output.replace(/\.fits$/, ".png"), output.replace(/\.fits$/, "_16bit.png")].filter((p) => existsSync(p));
      return { outputs: [output, ...previews], value: undefined };
    },
    done: () => {
      s.result.stretched.push(output);
    },
  });
}
