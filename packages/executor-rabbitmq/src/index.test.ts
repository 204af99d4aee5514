import { runEngineConformance } from "@tile-compile/core/testing";
import engine from "./index.js";

runEngineConformance(() => engine, "@tile-compile/executor-rabbitmq");
