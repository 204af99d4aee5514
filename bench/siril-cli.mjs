// Run a Siril script for a bench. siril-cli 1.0.6 now and then aborts at start-up with glibc heap corruption
// ("corrupted size vs. prev_size", SIGABRT after ~0.1 s, before any work; the same script succeeds when
// started again): start it again, say so, and time only the run that finished.
import { execFileSync } from "node:child_process";

/** Runs `siril-cli -s script -d dir`; returns its log and the seconds the finished run took. */
export function sirilCli(script, dir) {
  for (let attempt = 1; ; attempt++) {
    const t = performance.now();
    try {
      const log = execFileSync("siril-cli", ["-s", script, "-d", dir], {
        encoding: "utf8",
        maxBuffer: 1 << 28,
        stdio: ["ignore", "pipe", "pipe"],
      });
      return { log, seconds: (performance.now() - t) / 1000 };
    } catch (e) {
      if (!e.signal || attempt >= 5) throw e;
      console.log(`Siril: siril-cli crashed at start-up (${e.signal}: ${String(e.stderr).trim().split("\n").pop()}); starting it again`);
    }
  }
}
