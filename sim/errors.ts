// Errors of the simulator: the input cannot be simulated (a cycle, a task that can never start,
// an unmatched wait, a bad reference). The message names the tasks involved.
export class SimError extends Error {
  override name = 'SimError';
  /** Task ids involved, where known. */
  readonly tasks: number[];
  constructor(message: string, tasks: number[] = []) {
    super(message);
    this.tasks = tasks;
  }
}
