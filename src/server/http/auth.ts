// Who may use the HTTP listener: a bearer token (the Authorization header, the session cookie a browser gets
// by opening a page with ?token=, or that query parameter itself), or a TLS client certificate that the <ssl>
// section's CA signed. Pure decisions over a request's headers and its socket; the listener answers.

import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { TLSSocket } from 'node:tls';
import { strictX509Problem } from '../../transport/tls.js';

/** A fresh token: 32 random bytes, base64url (43 characters, safe in a URL and a header). */
export function randomToken(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * The token of an http-token-file: its first line, trimmed. A missing, unreadable or empty file is an error
 * saying so (the server must not start open, nor with a token nobody knows).
 */
export async function readTokenFile(path: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new Error(`http-token-file ${path}: ${(e as Error).message}`, { cause: e });
  }
  const token = text.split(/\r?\n/, 1)[0].trim();
  if (!token) throw new Error(`http-token-file ${path}: its first line is empty; write the token there`);
  if (!/^[\x21-\x7e]+$/.test(token)) {
    throw new Error(`http-token-file ${path}: the token must be printable ASCII without spaces`);
  }
  return token;
}

const sha256 = (s: string): Buffer => createHash('sha256').update(s).digest();

/** Equal strings, compared in time that does not depend on where they differ (over their hashes). */
function sameSecret(given: string, expectedHash: Buffer): boolean {
  return timingSafeEqual(sha256(given), expectedHash);
}

export type Verdict =
  | { ok: true; via: 'bearer' | 'cookie' | 'certificate' }
  /** the ?token= was right: set the session cookie and redirect to the URL without it */
  | { ok: true; via: 'query' }
  | { ok: false; status: 401 | 403; why: string };

export interface AuthOptions {
  /** the token (null: TLS client certificates only) */
  token: string | null;
  /** whether the listener is HTTPS with client certificates checked against the <ssl> CA */
  certificates: boolean;
  /** the session cookie's name (one per listener: cookies are shared by every port of a host) */
  cookieName: string;
}

export class Authenticator {
  private readonly tokenHash: Buffer | null;
  /** the cookie's value: derived from the token, so it is worthless once the token changes, and not the token */
  private readonly session: string | null;
  private readonly sessionHash: Buffer | null;

  constructor(readonly options: AuthOptions) {
    if (options.token === null && !options.certificates) {
      throw new Error('the HTTP listener needs a token or TLS client certificates');
    }
    this.tokenHash = options.token === null ? null : sha256(options.token);
    this.session =
      options.token === null
        ? null
        : createHmac('sha256', options.token).update('zeo-ts http session').digest('base64url');
    this.sessionHash = this.session === null ? null : sha256(this.session);
  }

  /** The Set-Cookie value for a browser that gave the right ?token= (Secure over TLS). */
  sessionCookie(secure: boolean): string {
    return (
      `${this.options.cookieName}=${this.session}; Path=/; HttpOnly; SameSite=Strict` +
      (secure ? '; Secure' : '')
    );
  }

  /** Whether the request may go on, and why not. A wrong ?token= is refused even beside other credentials. */
  check(req: IncomingMessage, url: URL): Verdict {
    const query = queryToken(url);
    if (query !== null) {
      if (this.tokenHash && sameSecret(query, this.tokenHash)) return { ok: true, via: 'query' };
      return { ok: false, status: 401, why: 'wrong token in the URL' };
    }
    if (this.tokenHash) {
      const auth = req.headers.authorization;
      const m = auth === undefined ? null : /^Bearer +(\S+) *$/i.exec(auth);
      if (m && sameSecret(m[1], this.tokenHash)) return { ok: true, via: 'bearer' };
      const cookie = cookieValue(req.headers.cookie, this.options.cookieName);
      if (cookie !== null && sameSecret(cookie, this.sessionHash!)) return { ok: true, via: 'cookie' };
    }
    let certProblem: string | null = null;
    if (this.options.certificates) {
      certProblem = certificateProblem(req);
      if (certProblem === null) return { ok: true, via: 'certificate' };
    }

    // certificate-only listeners refuse with 403 (no token could help); token listeners ask for one
    if (!this.tokenHash) return { ok: false, status: 403, why: certProblem ?? 'no client certificate' };
    if (certProblem !== null && certProblem !== 'no client certificate') {
      return { ok: false, status: 403, why: certProblem };
    }
    const why =
      req.headers.authorization !== undefined
        ? 'wrong bearer token'
        : cookieValue(req.headers.cookie, this.options.cookieName) !== null
          ? 'stale or wrong session cookie'
          : 'no credentials';
    return { ok: false, status: 401, why };
  }
}

/** Why the request's TLS client certificate is refused, or null when the <ssl> CA signed it. */
function certificateProblem(req: IncomingMessage): string | null {
  const socket = req.socket;
  if (!(socket instanceof TLSSocket)) return 'not a TLS connection';
  const cert = socket.getPeerX509Certificate();
  if (!cert) return 'no client certificate';
  if (!socket.authorized) return `client certificate refused: ${String(socket.authorizationError)}`;
  return strictX509Problem(socket, 'client');
}

/**
 * The first ?token= of the URL, percent-decoded only: a '+' stays a '+' (form decoding would make it a space,
 * which no token has, and base64 tokens, `openssl rand -base64 32`, are full of them). A malformed escape is
 * kept as it is (then it matches no token).
 */
function queryToken(url: URL): string | null {
  for (const pair of url.search.slice(1).split('&')) {
    const eq = pair.indexOf('=');
    const name = eq < 0 ? pair : pair.slice(0, eq);
    if (name !== 'token') continue;
    const value = eq < 0 ? '' : pair.slice(eq + 1);
    try {
      return decodeURIComponent(value);
    } catch {
      return value;
    }
  }
  return null;
}

/** The value of cookie `name` in a Cookie header, or null. */
export function cookieValue(header: string | undefined, name: string): string | null {
  if (!header) return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return null;
}
