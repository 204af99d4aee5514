#!/usr/bin/env node
// The bin. The only module (besides the vitest setup) that loads reflect-metadata (STYLE.md §8).
import "reflect-metadata";
import { runCli } from "./program.js";

const controller = new AbortController();
let interrupts = 0;
process.on("SIGINT", () => {
  interrupts++;
  if (interrupts === 1) {
    process.stderr.write("\nCancelling… (press Ctrl-C again to quit at once)\n");
    controller.abort(new DOMException("Cancelled by the user (SIGINT)", "AbortError"));
  } else process.exit(130);
});
// systemd, docker stop, kill: cancel as for Ctrl-C (a run removes its partial files, a worker finishes its units).
process.on("SIGTERM", () => controller.abort(new DOMException("Cancelled (SIGTERM)", "AbortError")));
// A closed terminal (ssh dropped, window closed): cancel cleanly too, rather than die mid-write.
process.on("SIGHUP", () => controller.abort(new DOMException("Cancelled (SIGHUP: the terminal closed)", "AbortError")));

process.exitCode = await runCli(process.argv, { signal: controller.signal });
