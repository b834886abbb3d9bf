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

// Semantics both interpreters share (clarified by planner/, no new opcodes; see planner/lower.ts
// for how the simulator orders them and planner/program-gen.ts for how generators emit them):
//  - Placement is per layer and comes from planner/memory.ts `placeStage(inventory, stage,
//    policy, headHasEmbedding(stages))`: which layers' weights are resident (else streamed),
//    which layers' gradients accumulate on the GPU (else on the host), how many elements of each
//    layer are updated on the GPU (optimizer_step.fraction), and whether the host-side optimizer
//    state of a layer is in pinned memory or on disk. Interpreters call it; they never re-derive it.
//  - Instructions are issued in order; compute (forward, backward, GPU optimizer_step) runs in
//    order on the compute stream; copies run in order on their copy stream; sends, fetches,
//    offloads, CPU updates and disk transfers are asynchronous (issue does not block).
//  - recv_act / recv_grad: the next forward / backward waits for the matching send.
//  - fetch_params copies a streamed layer into one of (prefetchDepth + 1) slots of its stage and
//    waits for a free one; the forward/backward after it waits for each layer's copy only when it
//    reaches that layer (a recomputing backward uses the layers forward, then backward, and has
//    one fetch per use); release_params frees the slot once the pass before it is done with it.
//  - offload_grads of a layer whose gradients accumulate on the host (placement) is issued after
//    every backward: copy, add into the host accumulator, free the GPU buffer. Of a layer whose
//    gradients stay on the GPU, it is issued once after the stage's last backward: copy the
//    gradients the CPU update needs; the GPU buffer stays (zeroed for the next step).
//  - optimizer_step(tier 'cpu') waits for the layer's last offload_grads (and disk_read);
//    upload_params waits for it and copies the CPU-updated part of the weights.
//  - disk_read waits for the disk_write issued just before it on the rank (this bounds the groups
//    staged in host memory); disk_write waits for the layer's CPU step. A rank's transfers on one
//    path run one after the other in issue order; transfers on different paths overlap.
//  - Early GPU update (planner/early-update.ts has the rule, native/src/runtime.cpp planEarlyUpdate
//    runs it): where a stage's last backward sends nothing to another rank and the program has only
//    whole GPU updates (no grad_norm), each decoder layer's optimizer_step is issued from its
//    gradient hook during that backward (on a side stream on a GPU); the instruction itself then
//    only orders the compute stream after it.
//  - With optimizer.delayedUpdate the CPU steps at the start of a program apply the previous
//    step's host gradients; their upload_params come after the step's last backward. A streamed
//    layer whose CPU step comes before the step's first backward is fetched, all step long, with
//    the weights of the update before (two host copies, swapped when the step's work is done), so
//    its update runs under the step's compute like a resident layer's.
//  - Alternating disk-group order (policy.diskAlternate, default on with the delayed update, where
//    every disk transfer of a rank comes before its first backward): on odd steps the rank's disk
//    groups run in reverse (disk_read, the cpu optimizer_step and disk_write of the group at
//    position j act on the group at position n-1-j of the program's disk_write order), and the
//    last diskBuffersFor(paths, concurrency) groups a step writes stay staged in host memory, so the
//    next step's first reads are served from it. A group keeps the path of its first write.

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
