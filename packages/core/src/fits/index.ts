export * from "./header.js";
export * from "./decode.js";
export * from "./reader.js";
export * from "./writer.js";
export type { HduInfo, HduKind } from "./hdu.js";
export { FileSource } from "./source.js";
