// The error catalogue lives in the leaf package @tile-compile/errors so that recon-native (which core
// depends on) raises the same typed errors; core re-exports it unchanged.
export * from "@tile-compile/errors";
