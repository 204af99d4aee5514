// The only place besides cli/src/main.ts that loads reflect-metadata (STYLE.md §8).
import "reflect-metadata";
