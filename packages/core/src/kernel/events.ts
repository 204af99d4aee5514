/**
 * One typed event stream per run. It feeds the CLI's progress display, the JSON log and the report.
 * Listeners are observers: they run synchronously, their errors are swallowed, they cannot change a run.
 */
import type { StageName } from "./contracts.js";

export type RunEvent =
  | { type: "stage:start"; stage: StageName; engine: string; method: string }
  | { type: "stage:progress"; stage: StageName; fraction: number; note?: string }
  | { type: "stage:done"; stage: StageName; engine: string; method: string; outputs: string[]; seconds: number }
  | { type: "stage:failed"; stage: StageName; engine: string; method: string; error: string; cancelled: boolean }
  | { type: "warning"; message: string };

export type RunEventListener = (event: RunEvent) => void;

export class RunEvents {
  private readonly listeners = new Set<RunEventListener>();

  on(listener: RunEventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(event: RunEvent): void {
    for (const l of this.listeners) {
      try {
        l(event);
      } catch {
        /* observers never break a run */
      }
    }
  }
}
