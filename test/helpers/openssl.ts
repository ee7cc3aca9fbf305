// The openssl CLI, which TLS tests make their certificates with: whether it is installed, and the skip reason.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type { TlsSection } from '../../src/transport/tls.js';

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

/**
 * A self-signed server certificate (localhost, 127.0.0.1) and a self-signed client certificate in `dir`, each the
 * other side's CA, as <ssl> sections: `ssl('server', 'client')` for the server, `ssl('client', 'server')` for a client.
 */
export function selfSignedPair(dir: string): (certificate: string, authenticate: string) => TlsSection {
  const p = (name: string): string => join(dir, name);
  for (const [who, subject, san] of [
    ['server', '/CN=localhost', 'subjectAltName=DNS:localhost,IP:127.0.0.1'],
    ['client', '/CN=zeo-ts client', 'subjectAltName=DNS:client'],
  ]) {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', p(`${who}.key`), '-out', p(`${who}.pem`), '-days', '2', '-subj', subject, '-addext', san,
    ], { stdio: ['ignore', 'ignore', 'pipe'] }); // prettier-ignore
  }
  return (certificate, authenticate) => ({
    certificate: p(`${certificate}.pem`),
    key: p(`${certificate}.key`),
    passwordFunction: null,
    authenticate: p(`${authenticate}.pem`),
  });
}
