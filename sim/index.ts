// Public API of the simulator. sim/ imports nothing of the project, no node:* and no DOM.
export * from './types.ts';
export { SimError } from './errors.ts';
export { SimGraph } from './graph.ts';
export { buildMachine } from './machine.ts';
export type { Machine, MachineGpu, MachineOptions } from './machine.ts';
export { parseHardwareProfile, ProfileError, HARDWARE_PROFILE_VERSION } from './profile.ts';
export type {
  HardwareProfile, Provenance, FigureSource, Dtype, GemmPoint, AttentionPoint, HostLink, HostGroup, PeerLink,
  ComputeProfile, OptimizerCurve, CpuProfile, DiskProfile, Overheads,
} from './profile.ts';
export { simulate, resourceLabel } from './engine.ts';
