import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'models'))) return dir;
    dir = dirname(dir);
  }
  return process.cwd();
}

/** The built-in default router (fitted on ../shared/data by `npm run fit:default`), or $UNIROUTE_ROUTER. */
export function defaultRouterPath(): string {
  return process.env.UNIROUTE_ROUTER || join(packageRoot(), 'models', 'default.uniroute.gz');
}
