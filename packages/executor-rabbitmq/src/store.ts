/**
 * `tile_data_ref`: where shared values and results that are too large for a message live. A reference is
 * a URL (`file:///shared/tc/<run>/<key>` or `s3://bucket/prefix/<run>/<key>`) plus the sha256 of the bytes;
 * every read verifies it. Writes are atomic (a temporary name, then rename; S3 puts are atomic) and a key
 * is written from a pure function of the unit, so a unit done twice writes the same bytes.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { TileCompileError } from "@tile-compile/core";

/** A checksummed reference to bytes in the shared store. */
export interface DataRef {
  url: string;
  sha256: string;
  bytes: number;
}

export interface DataStore {
  /** Store `data` under `<run>/<key>`. */
  put(run: string, key: string, data: Uint8Array): Promise<DataRef>;
  /** Read and verify. */
  get(ref: DataRef): Promise<Buffer>;
  /** Remove everything of a run. */
  clear(run: string): Promise<void>;
  /** Bytes written and read through this store. */
  readonly bytes: number;
}

export const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

function verify(ref: DataRef, b: Buffer): Buffer {
  if (b.length !== ref.bytes)
    throw new TileCompileError("TC_DATA_REF_INVALID", { ref: ref.url, reason: `has ${b.length} bytes, the reference says ${ref.bytes}` });
  const h = sha256(b);
  if (h !== ref.sha256)
    throw new TileCompileError("TC_DATA_REF_INVALID", {
      ref: ref.url,
      reason: `checksum sha256 ${h.slice(0, 12)}… does not match the reference's ${ref.sha256.slice(0, 12)}…`,
    });
  return b;
}

/** A folder every machine mounts at the same path (NFS, SMB, a bind mount). */
export class FileStore implements DataStore {
  bytes = 0;
  constructor(readonly root: string) {}
  async put(run: string, key: string, data: Uint8Array): Promise<DataRef> {
    const path = join(this.root, run, key);
    await mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.${randomBytes(4).toString("hex")}.partial`;
    await writeFile(tmp, data);
    await rename(tmp, path);
    this.bytes += data.byteLength;
    return { url: pathToFileURL(path).href, sha256: sha256(data), bytes: data.byteLength };
  }
  async get(ref: DataRef): Promise<Buffer> {
    let b: Buffer;
    try {
      b = await readFile(fileURLToPath(ref.url));
    } catch (e) {
      throw new TileCompileError(
        "TC_DATA_REF_INVALID",
        { ref: ref.url, reason: `cannot be read here: ${(e as Error).message}` },
        { cause: e },
      );
    }
    this.bytes += b.length;
    return verify(ref, b);
  }
  async clear(run: string): Promise<void> {
    await rm(join(this.root, run), { recursive: true, force: true });
  }
}

/** S3 settings for `s3://` stores (MinIO and other S3-compatible servers through `endpoint`). */
export interface S3Settings {
  endpoint?: string;
  region?: string;
  /** Path-style addressing (MinIO, s3rver). Default true when an endpoint is given. */
  forcePathStyle?: boolean;
  accessKeyId?: string;
  secretAccessKey?: string;
}

/** An S3 bucket (and key prefix): `s3://bucket/prefix`. */
export class S3Store implements DataStore {
  bytes = 0;
  private client: Promise<{ send(c: unknown): Promise<unknown> }>;
  private sdk: Promise<typeof import("@aws-sdk/client-s3")>;
  readonly bucket: string;
  readonly prefix: string;
  constructor(
    url: string,
    readonly settings: S3Settings = {},
  ) {
    const u = new URL(url);
    this.bucket = u.hostname;
    this.prefix = u.pathname.replace(/^\/+|\/+$/g, "");
    this.sdk = import("@aws-sdk/client-s3");
    this.client = this.sdk.then(
      (m) =>
        new m.S3Client({
          region: settings.region ?? process.env.AWS_REGION ?? "us-east-1",
          ...(settings.endpoint ? { endpoint: settings.endpoint } : {}),
          forcePathStyle: settings.forcePathStyle ?? settings.endpoint !== undefined,
          ...(settings.accessKeyId && settings.secretAccessKey
            ? { credentials: { accessKeyId: settings.accessKeyId, secretAccessKey: settings.secretAccessKey } }
            : {}),
        }) as never,
    );
  }
  private key(run: string, key: string) {
    return [this.prefix, run, key].filter(Boolean).join("/");
  }
  async put(run: string, key: string, data: Uint8Array): Promise<DataRef> {
    const m = await this.sdk,
      c = await this.client;
    const k = this.key(run, key);
    await c.send(new m.PutObjectCommand({ Bucket: this.bucket, Key: k, Body: data }));
    this.bytes += data.byteLength;
    return { url: `s3://${this.bucket}/${k}`, sha256: sha256(data), bytes: data.byteLength };
  }
  async get(ref: DataRef): Promise<Buffer> {
    const m = await this.sdk,
      c = await this.client;
    const u = new URL(ref.url);
    let b: Buffer;
    try {
      const r = (await c.send(new m.GetObjectCommand({ Bucket: u.hostname, Key: u.pathname.slice(1) }))) as {
        Body: { transformToByteArray(): Promise<Uint8Array> };
      };
      b = Buffer.from(await r.Body.transformToByteArray());
    } catch (e) {
      throw new TileCompileError("TC_DATA_REF_INVALID", { ref: ref.url, reason: `cannot be read: ${(e as Error).message}` }, { cause: e });
    }
    this.bytes += b.length;
    return verify(ref, b);
  }
  async clear(run: string): Promise<void> {
    const m = await this.sdk,
      c = await this.client;
    const Prefix = `${this.key(run, "")}`;
    for (;;) {
      const r = (await c.send(new m.ListObjectsV2Command({ Bucket: this.bucket, Prefix }))) as { Contents?: { Key?: string }[] };
      const keys = (r.Contents ?? []).map((o) => o.Key!).filter(Boolean);
      if (!keys.length) break;
      await c.send(new m.DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: keys.map((Key) => ({ Key })) } }));
    }
  }
}

/** The store for a `runtime.rabbitmq.data` URL (a plain path is a folder). */
export function storeFor(url: string, s3?: S3Settings): DataStore {
  if (url.startsWith("s3://")) return new S3Store(url, s3);
  if (url.startsWith("file://")) return new FileStore(fileURLToPath(url));
  if (url.includes("://"))
    throw new TileCompileError("TC_CONFIG_INVALID", {
      file: "tile_compile.yaml",
      issues: [`runtime.rabbitmq.data: "${url}" — use file:///shared/folder or s3://bucket/prefix`],
    });
  return new FileStore(url);
}

/** Stores by base URL, for workers: each unit names the store its run uses. */
export class StoreCache {
  private stores = new Map<string, DataStore>();
  constructor(private readonly s3?: S3Settings) {}
  for(base: string): DataStore {
    let s = this.stores.get(base);
    if (!s) {
      s = storeFor(base, this.s3);
      this.stores.set(base, s);
    }
    return s;
  }
  get bytes(): number {
    let n = 0;
    for (const s of this.stores.values()) n += s.bytes;
    return n;
  }
}
