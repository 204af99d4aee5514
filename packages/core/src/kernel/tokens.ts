/**
 * DI tokens: typed symbols, one helper, no string tokens (STYLE.md §8). Only core and cli use them;
 * engines never see the container.
 */
import type { InjectionToken } from "tsyringe";
import type { ReconBackend } from "@tile-compile/recon-native";
import type { Executor } from "../executor/contracts.js";
import type { EngineDefinition, Logger } from "./contracts.js";
import type { RunEvents } from "./events.js";
import type { EngineRegistry } from "./registry.js";

/** A typed injection token. */
export function token<T>(description: string): InjectionToken<T> & symbol {
  return Symbol(description) as InjectionToken<T> & symbol;
}

/** Every engine of the run (built-ins and loaded), registered with `registerInstance(Engine, e)`. */
export const Engine = token<EngineDefinition>("Engine");
export const Registry = token<EngineRegistry>("EngineRegistry");
export const RunLogger = token<Logger>("RunLogger");
export const RunSignal = token<AbortSignal>("RunSignal");
export const Events = token<RunEvents>("RunEvents");
export const Workdir = token<string>("Workdir");
/** The run's executor when `runtime.executor` distributes the work (registered only then). */
export const RunExecutor = token<Executor>("RunExecutor");
/** The pixel kernels (recon-native: the Rust addon, or its TypeScript twin), with the run's thread count set. */
export const Kernels = token<ReconBackend>("Kernels");
