// Public types of the simulator: what a caller builds (devices, resources, tasks, memory
// effects) and what `simulate` returns. The simulator knows nothing of LLMs: it runs tasks with
// dependencies on resources in virtual time. Times are microseconds (`_us`), sizes bytes,
// bandwidths GB/s (1 GB = 1e9 bytes), CPU work in elements (e.g. parameters).
//
// Change policy: additive only (new optional fields, new union members at the end).

/** Index of a device (one trace process, one memory pool) in a SimGraph. */
export type DeviceId = number;
/** Index of a queueing resource (stream, CPU pool, disk) in a SimGraph. */
export type ResourceId = number;
/** Index of a link (a capacity shared max-min fairly by the flows crossing it). */
export type LinkId = number;
/** Index of a task in a SimGraph (dense, in the order tasks were added). */
export type TaskId = number;

/** What a device is; decides nothing in the engine, only labels and trace sort order. */
export type DeviceKind = 'gpu' | 'host' | 'disk' | 'cpu' | 'other';

/**
 * Queueing resources a task can run on.
 * - `stream`: runs one task at a time, **in the order tasks were added** to it (a CUDA stream,
 *   an in-order copy engine queue, a communication stream). A stream's `role` says whether the
 *   device's compute slowdown under copies applies (role `compute`).
 * - `cpu`: a worker pool; a task uses `workers` workers; throughput of the pool is a measured
 *   curve of busy workers (piecewise-linear), shared by running tasks in proportion to workers.
 *   Tasks start in the order they became ready (FIFO, no overtaking).
 * - `disk`: a path with a read link and a write link and a concurrency limit; a task is a read or
 *   a write of `bytes`. Tasks start in ready order.
 */
export type ResourceKind = 'stream' | 'cpu' | 'disk';
export type StreamRole = 'compute' | 'copy' | 'comm' | 'other';

/** Classes of memory, for breakdowns at the peak. */
export type MemClass = 'weights' | 'gradients' | 'optimizer' | 'master' | 'activations' | 'buffers';
export const MEM_CLASSES: readonly MemClass[] = ['weights', 'gradients', 'optimizer', 'master', 'activations', 'buffers'];

export interface DeviceSpec {
  kind: DeviceKind;
  /** Memory pool capacity in bytes (reported beside the peak; exceeding it is not an error). */
  memory_bytes?: number;
  /** Compute on this device's `compute` streams runs `1 + f` times longer while any flow crosses
   *  one of this device's links (copies or collectives). Default 0. */
  slowdown_under_copies?: number;
}

export interface StreamSpec {
  role?: StreamRole; // default 'compute'
}

export interface LinkSpec {
  /** Capacity shared by all flows crossing the link. */
  GBps: number;
  /** Fixed latency added before a transfer's bytes start to move (summed over its route). */
  latency_us?: number;
  /** Set on a link whose transfers draw on host DRAM (a host-GPU route): a flow crossing it moves
   *  (1 + this x the busy fraction of the CPU pools' workers) times slower (the copy engines' DMA
   *  and a DRAM-bound CPU update share the DRAM), and it counts as a copy for the pools'
   *  slowdown_under_copies. Unset: neither. */
  slowdown_under_cpu?: number;
}

/** One point of a CPU pool's throughput curve: total elements/s with `workers` busy workers. */
export interface CpuCurvePoint {
  workers: number;
  elements_per_s: number;
}

export interface CpuPoolSpec {
  workers: number;
  /** Total pool throughput against busy workers; interpolated linearly, 0 at 0 workers, flat
   *  beyond the last point. At least one point. */
  curve: readonly CpuCurvePoint[];
  /** The pool runs (1 + this x min(1, flows / slowdown_copies)) times slower while flows cross
   *  links with slowdown_under_cpu (the copy engines' DMA on the same DRAM; default 0). */
  slowdown_under_copies?: number;
  /** Host-memory flows at once that bring the full slowdown_under_copies (default 1). */
  slowdown_copies?: number;
}

export interface DiskSpec {
  read_GBps: number;
  write_GBps: number;
  /** Transfers in flight at once on this path (others wait, FIFO). */
  concurrency: number;
  latency_us?: number;
  /** Its transfers move (1 + this) times slower while any CPU pool task runs (they are
   *  host-memory flows, as LinkSpec.slowdown_under_cpu). Unset: neither. */
  slowdown_under_cpu?: number;
}

/** Metadata carried into results and the trace (`args`); pairs predicted and measured tasks. */
export interface TaskMeta {
  rank?: number;
  pc?: number;
  mb?: number;
  stage?: number;
  op?: string;
  layer?: number;
  bytes?: number;
  flops?: number;
}

/**
 * A memory effect of a task on a named buffer of a pool (device). Allocations default to the
 * task's start, frees to its end. A buffer name is unique per pool while live; allocating a live
 * buffer or freeing a dead one is a SimError naming the task and buffer.
 */
export interface MemEffect {
  op: 'alloc' | 'free';
  device: DeviceId;
  buffer: string;
  /** alloc only. */
  bytes?: number;
  /** alloc only; default 'buffers'. */
  class?: MemClass;
  at?: 'start' | 'end';
}

/**
 * One task. Work is, in order: a fixed phase (`duration_us` plus the latencies of the links it
 * crosses plus `latency_us`), then a variable phase: `bytes` over `links` (a flow; on a disk the
 * disk's read or write link is prepended), or `elements` on a CPU pool. A task with none of these
 * takes no time.
 */
export interface TaskSpec {
  /** For messages and the trace. Default `op` from meta, else `task<i>`. */
  name?: string;
  /** The queue it runs on; omitted: starts as soon as its dependencies are done (a pure flow or
   *  a delay). */
  on?: ResourceId;
  duration_us?: number;
  /** Bytes moved (a flow over `links`, shared max-min fairly, capped by `cap_GBps`). */
  bytes?: number;
  links?: readonly LinkId[];
  cap_GBps?: number;
  latency_us?: number;
  /** Disk tasks: direction. */
  dir?: 'read' | 'write';
  /** CPU pool tasks: elements of work (rate from the pool's curve). */
  elements?: number;
  /** CPU pool tasks: workers used (default 1, at most the pool's workers). */
  workers?: number;
  /** Tasks that must end before this one may start (any earlier or later index). */
  deps?: readonly TaskId[];
  /** Named events that must be signalled (by `signal` of another task) before this one starts;
   *  a name nobody signals is a SimError naming this task (e.g. an unmatched receive). */
  waitFor?: readonly string[];
  /** Names this task signals when it ends. */
  signal?: string | readonly string[];
  mem?: readonly MemEffect[];
  meta?: TaskMeta;
}

export interface SimOptions {
  /** Record the memory-over-time series (default true; the search may switch it off). */
  memorySeries?: boolean;
  /** Tokens processed by the simulated step, for `tokens_per_s`. */
  tokens?: number;
  /** Compute the critical path (default true). */
  criticalPath?: boolean;
  /** Log every change of the bandwidth in use on each link (default false): the trace then has a
   *  GB/s counter per link. */
  linkSeries?: boolean;
  /** Report per-resource usage and per-device memory (default true; without them `resources` and
   *  `memory` are empty: for callers that need only the times, like the search). */
  usage?: boolean;
  /** The result's start_us / end_us are views of arrays the next simulate overwrites (default
   *  false): for callers that are done with a result before the next run (the search). */
  reuse?: boolean;
}

export interface ResourceUsage {
  name: string;
  kind: ResourceKind | 'link';
  device: string;
  /** Time with at least one task (flow) running. */
  busy_us: number;
  /** busy_us / makespan_us (0 when the makespan is 0). */
  utilisation: number;
  /** Links and disks: bytes carried. */
  bytes?: number;
  /** Links: bytes / (capacity * makespan). */
  bandwidth_utilisation?: number;
}

export interface MemoryReport {
  device: string;
  capacity_bytes: number | null;
  peak_bytes: number;
  /** First time the peak was reached. */
  peak_time_us: number;
  /** Live bytes by class at the peak. */
  peak_by_class: Record<MemClass, number>;
  /** Live buffer names at the peak, largest first (at most 32). */
  peak_buffers: { buffer: string; bytes: number; class: MemClass }[];
  /** Bytes still live at the end. */
  end_bytes: number;
  /** Memory over time: after each change, time and total bytes (empty when switched off). */
  series: { t_us: number[]; bytes: number[] };
}

export interface CriticalPath {
  /** Tasks from the first to the one that ends last; each started when its predecessor here
   *  ended (a dependency, or the release of the resource it waited for). */
  tasks: TaskId[];
  /** Time on the path per resource name (a flow without a queue counts on its first link). */
  by_resource: { name: string; us: number }[];
  /** The resource with the most time on the critical path: what bounds the step. */
  bound: string;
}

export interface SimResult {
  makespan_us: number;
  step_s: number;
  tokens_per_s: number | null;
  /** Per task (index = TaskId). */
  start_us: Float64Array;
  end_us: Float64Array;
  resources: ResourceUsage[];
  memory: MemoryReport[];
  critical: CriticalPath | null;
  /** Tasks simulated. */
  tasks: number;
  /** Memory effects in the order they happened (effect index into the graph, time): what the
   *  trace writer replays for counters. */
  mem_log?: { time_us: Float64Array; effect: Int32Array; count: number };
  /** With `linkSeries`: changes of the bandwidth in use per link (bytes/us), in order. */
  link_log?: { time_us: Float64Array; link: Int32Array; delta_bytes_per_us: Float64Array; count: number };
}
