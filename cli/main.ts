// `mmoc`: a thin shell over sim/, planner/ and executor/. Each subcommand lives next to the code
// it drives and registers itself through cli/commands.ts.
import { Command, CommanderError } from 'commander';
import { commands } from './commands.ts';
import { EXIT_BAD_INPUT, reportError } from './common.ts';

export function buildProgram(): Command {
  const program = new Command('mmoc')
    .description(
      'Plan and run full fine-tuning of LLaMA-family models on GPUs too small for them:\n' +
        'pipeline parallelism + GPU/CPU/disk offload, planned by a calibrated simulator.',
    )
    .version(process.env.npm_package_version ?? '0.1.0')
    .showHelpAfterError('(add --help for usage)')
    .exitOverride();
  for (const register of commands) register(program);
  for (const c of program.commands) c.exitOverride();
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end through here with exit code 0.
      return err.exitCode === 0 ? 0 : EXIT_BAD_INPUT;
    }
    return reportError(err);
  }
  return typeof process.exitCode === 'number' ? process.exitCode : 0;
}

const code = await main(process.argv.slice(2));
process.exitCode = code;
