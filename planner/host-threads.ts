// Threads of a rank's host worker (its CPU AdamW updates and host-side gradient adds): the host's
// cores split between the ranks on it, less one a GPU rank for the thread that launches its kernels.
// With every core in the update teams (2 x 16 on a 32-core host) the launching threads waited for
// cores: LLaMA-3.2-1B's delayed host-AdamW plan (its update runs under the next forward) took
// 0.2019 s a step at 16 threads a rank and 0.1803 at 15, and two 15-thread teams updated at 6.62 G
// params/s against 6.35 for two of 16 (2x H200 host, bench/gpu/threads-probe.sh). CPU ranks compute
// on these threads themselves: all of their share.

/** Host worker threads of each of `ranks` ranks on a host of `cores` cores (at least 1). */
export function hostThreadsPerRank(cores: number, ranks: number, gpu: boolean): number {
  return Math.max(1, Math.floor(cores / Math.max(1, ranks)) - (gpu ? 1 : 0));
}
