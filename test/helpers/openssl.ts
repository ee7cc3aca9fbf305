// The openssl CLI, which TLS tests make their certificates with: whether it is installed, and the skip reason.
import { execFileSync } from 'node:child_process';

function haveOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** false when openssl is installed, else why TLS tests are skipped (for `test(..., { skip })`). */
export const noOpenssl: false | string = haveOpenssl()
  ? false
  : 'the openssl CLI is not installed: no certificates to test with';
