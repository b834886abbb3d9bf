// Public API of the simulator. sim/ imports nothing of the project, no node:* and no DOM.
export * from './types.ts';
export { SimError } from './errors.ts';
export { SimGraph } from './graph.ts';
export { GrowI32, GrowF64 } from './grow.ts';
export { buildMachine } from './machine.ts';
export type { Machine, MachineGpu, MachineOptions } from './machine.ts';
export { parseHardwareProfile, ProfileError, HARDWARE_PROFILE_VERSION, updateShownShare } from './profile.ts';
export type {
  HardwareProfile, Provenance, FigureSource, Dtype, GemmPoint, AttentionPoint, HostLink, HostGroup, PeerLink,
  ComputeProfile, OptimizerCurve, CpuProfile, DiskProfile, Overheads, UpdateOverlap,
} from './profile.ts';
export { simulate, resourceLabel } from './engine.ts';
export { chromeTrace, chromeTraceJSON } from './trace.ts';
export type { ChromeTrace, TraceEvent } from './trace.ts';
export {
  gemmTime_us, attentionTime_us, attentionFlops, elementwiseTime_us, transferTime_us, hostTransferTime_us,
  cpuOptimizerTime_us, optimizerTime_us, optimizerBytesPerUs, kernelTime_us, diskTime_us, curveAt, computeOf, DTYPE_BYTES,
} from './cost.ts';
export type { CostEstimate, ComputeDevice, AttentionShape } from './cost.ts';
