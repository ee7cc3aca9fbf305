// TLS contexts as ZEO's zconfig.ssl_config builds them from an <ssl> section, for the server (client certificates
// required, checked against `authenticate`) and for the client (the server's certificate checked against
// `authenticate`, or the system's CAs without it). Certificates required both ways, strict X.509 as ZEO asks
// (VERIFY_X509_STRICT; CRL leaf checks when CRLs are found).

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type tls from 'node:tls';

/** An <ssl> section (ZEO's component.xml), read by the server's and the client's configuration. */
export interface TlsSection {
  certificate: string | null;
  key: string | null;
  /** a Python dotted name in ZEO; zeo-ts cannot call Python, so it refuses one */
  passwordFunction: string | null;
  /** CA file, CA directory (OpenSSL's capath), or 'DYNAMIC'; null (client only): the system's CAs */
  authenticate: string | null;
  /** client: check the server's name against its certificate (ZEO's default: true) */
  checkHostname?: boolean;
  /** client: the name to check and send as SNI */
  serverHostname?: string | null;
}

/** The server's TLS options: its certificate, client certificates required and checked against `authenticate`. */
export function serverTlsOptions(ssl: TlsSection): tls.TlsOptions {
  if (!ssl.certificate) throw new Error('<ssl> of a server needs a certificate');
  if (ssl.authenticate === null)
    throw new Error('<ssl> of a server needs authenticate (a CA file or directory)');
  return {
    ...certificateOptions(ssl, 'the server'),
    ...caOptions(ssl.authenticate),
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2',
  };
}

/** The client's TLS options: the server's certificate checked (and its name, unless check-hostname is off). */
export function clientTlsOptions(ssl: TlsSection): tls.ConnectionOptions {
  const options: tls.ConnectionOptions = {
    ...(ssl.certificate ? certificateOptions(ssl, 'the client') : {}),
    // without authenticate (or with DYNAMIC) the system's CAs, as create_default_context loads them
    ...(ssl.authenticate && ssl.authenticate !== 'DYNAMIC' ? caOptions(ssl.authenticate) : {}),
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2',
  };
  if (ssl.serverHostname) options.servername = ssl.serverHostname;
  if (ssl.checkHostname === false) options.checkServerIdentity = () => undefined;
  return options;
}

function certificateOptions(ssl: TlsSection, who: string): { cert: Buffer; key: Buffer } {
  if (ssl.passwordFunction) {
    throw new Error(
      `<ssl> password-function ${ssl.passwordFunction} names a Python callable, which zeo-ts cannot call: ` +
        `give ${who} an unencrypted key file (readable by ${who} only)`,
    );
  }
  const cert = readFileSync(ssl.certificate!);
  return { cert, key: readFileSync(ssl.key ?? ssl.certificate!) };
}

/**
 * The CAs (and CRLs) of a CA file or of a directory as OpenSSL's capath reads it (only `<subject hash>.N`
 * certificates and `<hash>.rN` CRLs); 'DYNAMIC' trusts none (the reference checks nothing then either).
 */
function caOptions(authenticate: string): { ca: string[]; crl?: string[] } {
  const ca: string[] = [];
  const crl: string[] = [];
  if (authenticate !== 'DYNAMIC') {
    const files = statSync(authenticate).isDirectory()
      ? readdirSync(authenticate)
          .filter((f) => /^[0-9a-f]{8}\.r?\d+$/.test(f))
          .map((f) => join(authenticate, f))
      : [authenticate];
    for (const f of files) {
      const text = readFileSync(f, 'latin1');
      ca.push(...pemBlocks(text, 'CERTIFICATE'));
      crl.push(...pemBlocks(text, 'X509 CRL'));
    }
  }
  return crl.length > 0 ? { ca, crl } : { ca };
}

function pemBlocks(text: string, label: string): string[] {
  const re = new RegExp(`-----BEGIN ${label}-----[\\s\\S]*?-----END ${label}-----`, 'g');
  return text.match(re) ?? [];
}

/** The authority key identifier extension's OID, 2.5.29.35, as DER. */
const AKI_OID = Buffer.from([0x06, 0x03, 0x55, 0x1d, 0x23]);

/**
 * What ZEO's VERIFY_X509_STRICT adds to Node's checks for a peer certificate: one that is not self-signed must
 * name its issuer's key (authority key identifier), as OpenSSL's strict mode requires. Null when it passes.
 */
export function strictX509Problem(socket: tls.TLSSocket, peer: 'client' | 'server'): string | null {
  const cert = socket.getPeerX509Certificate();
  if (!cert) return null;
  if (cert.issuer !== cert.subject && cert.raw.indexOf(AKI_OID) < 0) {
    return `${peer} certificate has no authority key identifier (strict X.509 checking)`;
  }
  return null;
}
