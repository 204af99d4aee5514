/**
 * A private RabbitMQ node on loopback for tests: its own node name, AMQP and distribution ports and data
 * folder, so it never touches a system broker. Debian's rabbitmq-server, started directly (not through
 * the /usr/sbin wrapper that switches to the rabbitmq user). Accepts connections about 5–7 s after start.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { createServer, connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server";

export interface TestBroker {
  url: string;
  port: number;
  /** Stop the node (SIGTERM to its process group) and wait for the port to close. */
  stop(): Promise<void>;
  /** Start it again on the same port and data folder (queues and persistent messages survive). */
  start(): Promise<void>;
}

/** Whether the broker can run here; prints how to install it when not. */
export function brokerAvailable(): boolean {
  if (existsSync(SERVER)) return true;
  console.log(
    "SKIP executor-rabbitmq broker tests: rabbitmq-server is not installed (apt-get install -y --no-install-recommends rabbitmq-server)",
  );
  return false;
}

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => res(p));
    });
    s.on("error", rej);
  });
}

const portOpen = (port: number) =>
  new Promise<boolean>((res) => {
    const s = connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      res(true);
    });
    s.once("error", () => res(false));
  });

export async function startTestBroker(): Promise<TestBroker> {
  const dir = mkdtempSync(join(tmpdir(), "tc-rabbit-"));
  writeFileSync(join(dir, "enabled_plugins"), "[].\n");
  const port = await freePort();
  const dist = port + 20000 > 65000 ? port - 20000 : port + 20000;
  const node = `tc-test-${port}@localhost`;
  let child: ChildProcess | undefined;
  const env = {
    ...process.env,
    HOME: dir,
    RABBITMQ_NODENAME: node,
    RABBITMQ_NODE_IP_ADDRESS: "127.0.0.1",
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(dist),
    RABBITMQ_MNESIA_BASE: join(dir, "mnesia"),
    RABBITMQ_LOG_BASE: join(dir, "log"),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, "enabled_plugins"),
    RABBITMQ_PID_FILE: join(dir, "pid"),
    RABBITMQ_CONFIG_FILE: join(dir, "none"),
  };
  const start = async () => {
    child = spawn(SERVER, [], { env, cwd: dir, detached: true, stdio: "ignore" });
    child.unref();
    const t0 = Date.now();
    while (!(await portOpen(port))) {
      if (Date.now() - t0 > 60_000) throw new Error(`rabbitmq-server did not open port ${port} within 60 s (logs in ${dir}/log)`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  const stop = async () => {
    if (!child?.pid) return;
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {
      /* gone */
    }
    const t0 = Date.now();
    while (await portOpen(port)) {
      if (Date.now() - t0 > 30_000) {
        try {
          process.kill(-child.pid, "SIGKILL");
        } catch {
          /* gone */
        }
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 300));
    child = undefined;
  };
  await start();
  return { url: `amqp://guest:guest@127.0.0.1:${port}`, port, start, stop };
}
