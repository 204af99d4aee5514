// The seeded generator lives in the leaf package recon-native (its tests and benchmarks need it too).
export { seededRandom } from "@tile-compile/recon-native";
