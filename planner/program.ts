// The per-rank program: the one contract that the simulator (through planner/lower) and the native
// executor both run. A plan's `program.ranks[r]` is the ordered instruction list of rank r; an
// interpreter runs it top to bottom. Instructions name *what* to do, never *how long* it takes:
// costs come from the inventory and the hardware profile (sim) or from running it (executor).
//
// Indices:
//   layer  - inventory layer index: 0 = token embedding, 1..L = decoder layers, L+1 = final norm +
//            head + loss (L = num_hidden_layers), so a model has L+2 layers.
//   stage  - pipeline (virtual) stage index into plan.layout.stages; with interleaving, rank r
//            holds stages r, r+N, r+2N, ... (N = pipeline ranks). A stage owns layers [lo, hi).
//   mb     - micro-batch index within a step, 0..M-1.
//   peer   - the other rank of a point-to-point transfer.
//   path   - index into the job's disk paths (plan.policy.diskPaths).
//
// New schedules and offload policies are new generators in planner/, not new interpreters: add an
// opcode here only when neither interpreter can express the work with the ones below, and teach
// both interpreters at once.

/** Where a class of state lives. */
export type Tier = 'gpu' | 'cpu' | 'disk';

export type Instr =
  // ---- compute (on the rank's compute stream)
  /** Forward of micro-batch `mb` through all layers of `stage`; keeps what backward needs
   *  (or only the stage input when the stage recomputes). */
  | { op: 'forward'; mb: number; stage: number }
  /** Backward of `mb` through `stage` (recomputing its forward first when the stage's policy
   *  says so); accumulates parameter gradients. */
  | { op: 'backward'; mb: number; stage: number }
  // ---- pipeline point-to-point (activations forward, their gradients backward)
  | { op: 'send_act'; mb: number; stage: number; peer: number } // output of `stage` to the rank of stage+1
  | { op: 'recv_act'; mb: number; stage: number; peer: number } // input of `stage` from the rank of stage-1
  | { op: 'send_grad'; mb: number; stage: number; peer: number } // d(input of `stage`) to the rank of stage-1
  | { op: 'recv_grad'; mb: number; stage: number; peer: number } // d(output of `stage`) from the rank of stage+1
  // ---- parameter streaming (host -> GPU copy stream)
  /** Copy a layer's compute-precision weights from host to GPU ahead of use. */
  | { op: 'fetch_params'; layer: number }
  /** Drop the GPU copy of a streamed layer's weights. */
  | { op: 'release_params'; layer: number }
  // ---- gradients
  /** Copy a layer's gradients GPU -> host (after its last backward of the step). */
  | { op: 'offload_grads'; layer: number }
  /** Data-parallel all-reduce of a layer's gradients across the replicas of its stage. */
  | { op: 'allreduce_grads'; layer: number }
  // ---- activations of checkpointed layers
  | { op: 'offload_act'; mb: number; stage: number } // stage input GPU -> host after forward
  | { op: 'reload_act'; mb: number; stage: number } // host -> GPU before backward
  // ---- optimizer
  /** Global gradient norm across all stages (an all-reduce of squared norms); clipping scale. */
  | { op: 'grad_norm' }
  /** Optimizer update of a layer's parameter group on `tier` ('gpu' or 'cpu'). `fraction` (0..1,
   *  default 1) of the group's elements are updated there; the rest on the other tier by a
   *  second instruction. */
  | { op: 'optimizer_step'; layer: number; tier: 'gpu' | 'cpu'; fraction?: number }
  /** Upload a layer's updated compute-precision weights host -> GPU after a CPU update. */
  | { op: 'upload_params'; layer: number }
  // ---- disk tier (optimizer-state groups)
  | { op: 'disk_read'; layer: number; path: number } // host <- disk: master + m + v of the group
  | { op: 'disk_write'; layer: number; path: number } // host -> disk
  /** Wait until every asynchronous instruction issued before it on this rank has finished. */
  | { op: 'barrier' };

export type Opcode = Instr['op'];

/** One stage of the pipeline layout. */
export interface StageSpec {
  /** Layers [lo, hi) in inventory indices (see the header). */
  layers: [number, number];
  /** The pipeline rank that runs the stage. */
  rank: number;
}

export interface Program {
  /** `ranks[r]` is rank r's instruction list, in issue order. */
  ranks: Instr[][];
}
