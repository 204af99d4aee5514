// Build the Rust addon from source with `napi build --platform --release` (no crates are downloaded:
// the crate has no dependencies and cargo runs --offline). Without cargo this prints one line and exits
// 0, so `pnpm build` still works and the TypeScript backend is used (it says so once when loaded).
import { execFileSync, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
if (spawnSync("cargo", ["--version"], { stdio: "ignore" }).status !== 0) {
  console.log(
    "recon-native: cargo not found, skipping the native build (TypeScript backend will be used). Install Rust (cargo) to build it.",
  );
  process.exit(0);
}
const napi = fileURLToPath(new URL("../node_modules/@napi-rs/cli/dist/cli.js", import.meta.url));
execFileSync(
  process.execPath,
  [napi, "build", "--platform", "--release", "--manifest-path", "native/Cargo.toml", "--output-dir", ".", "--no-js"],
  {
    cwd: root,
    stdio: "inherit",
    env: { ...process.env, CARGO_NET_OFFLINE: "true" },
  },
);
