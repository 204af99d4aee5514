/** Every official engine and the fixture third-party engine pass the conformance kit. */
import { runEngineConformance } from "@tile-compile/core/testing";
import { nativeEngine } from "@tile-compile/engine-native";

runEngineConformance(() => nativeEngine, "@tile-compile/engine-native (native)");
runEngineConformance(async () => (await import("./fixtures/engine-maxstack/index.js")).default, "tile-compile-engine-maxstack (fixture)");
