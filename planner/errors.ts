// Errors that mean "the input is wrong" (CLI exit code 2), as opposed to a job that failed (1).
// The message names the file, field or stage and says what to do.
export class InputError extends Error {
  override name = 'InputError';
}
