// V8 flags the agent sets on itself, first thing (bin.ts imports this module
// before any other, and calls applyV8Flags again in an image started from a
// startup snapshot: flags are the process's, not the snapshot's). The single
// executable takes no Node options on its command line, and NODE_OPTIONS
// refuses most V8 flags, so they are set at run time: only flags V8 reads
// while running can be (heap sizes, for one, are fixed when the isolate is
// made; --lite-mode set now crashes).
//
// --no-opt: no optimizing compiler (TurboFan). Measured with bench/footprint.ts
// (Python grpcio, sequential health Checks, 2 cores): p99 2.2 ms -> 0.5-0.6 ms,
// p50 285 -> 340 µs. The p99 came from optimizing compiles competing for the
// cores with the call being answered; an agent spends its time waiting, not
// computing. A bare grpc-js server under --no-opt has the same p50 (421 vs
// 400 µs); Maglev, --always-sparkplug and a single-threaded GC were measured
// and did not pay (docs/machine-facts.md, "Node and grpc-js footprint").
// AGENT_V8_OPT=1 keeps the optimizing compiler (to measure it).
import v8 from 'node:v8';

export function applyV8Flags(): void {
  if (process.env.AGENT_V8_OPT !== '1') v8.setFlagsFromString('--no-opt');
}

applyV8Flags();
