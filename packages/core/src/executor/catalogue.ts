/**
 * A worker's task catalogue: the tasks of the engines it was started with, by name. A unit names its
 * task; a worker resolves the name here. Engines bring their tasks (`defineEngine({ …, tasks })`).
 */
import { TileCompileError } from "../errors/index.js";
import type { Task } from "./contracts.js";

/** Every task of `engines` by name; two engines defining the same task name is an error. */
export function taskCatalogue(engines: readonly { meta: { name: string }; tasks?: readonly Task[] }[]): ReadonlyMap<string, Task> {
  const tasks = new Map<string, Task>();
  const owner = new Map<string, string>();
  for (const e of engines) {
    for (const t of e.tasks ?? []) {
      const other = owner.get(t.name);
      if (other !== undefined && other !== e.meta.name)
        throw new TileCompileError("TC_TASK_CONFLICT", { task: t.name, engines: `${other} and ${e.meta.name}` });
      tasks.set(t.name, t);
      owner.set(t.name, e.meta.name);
    }
  }
  return tasks;
}
