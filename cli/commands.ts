// The subcommands of `mmoc`, in the order `mmoc --help` lists them. Each module lives next to
// the code it drives and exports `register(program)`.
import type { Register } from './common.ts';
import { register as memory } from './memory.ts';
import { register as plan } from './plan.ts';
import { register as doctor } from './doctor.ts';
import { register as execute } from './execute.ts';
import { register as compare } from './compare.ts';
import { register as calibrate } from './calibrate.ts';
import { register as data } from './data.ts';

export const commands: Register[] = [memory, plan, data, execute, compare, calibrate, doctor];
