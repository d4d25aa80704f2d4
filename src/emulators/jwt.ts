import {
  SignJWT,
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  jwtVerify,
  type JWK,
  type JWTPayload,
  type ProtectedHeaderParameters,
} from 'jose';

/** A public key as it appears in a JWKS document. */
export interface PublicJwk extends JWK {
  kid: string;
  kty: 'RSA';
  alg: 'RS256';
  use: 'sig';
}

interface KeyEntry {
  kid: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  jwk: PublicJwk;
}

export interface VerifyOptions {
  /** The `iss` the token must carry. */
  issuer: string;
}

/**
 * RS256 signing keys with rotation. The newest key signs; every key still held verifies, the way
 * Keycloak keeps older keys active after a new one is added, so tokens already out stay valid.
 */
export class SigningKeys {
  private keys: KeyEntry[] = [];

  private constructor() {}

  static async create(): Promise<SigningKeys> {
    const keys = new SigningKeys();
    await keys.rotate();
    return keys;
  }

  /** The key id (`kid`) new tokens are signed with. */
  get currentKid(): string {
    return this.current().kid;
  }

  /**
   * Adds a new signing key and makes it current. With `keepPrevious: false` the older keys are
   * dropped, so tokens they signed no longer verify and vanish from the JWKS.
   */
  async rotate(options: { keepPrevious?: boolean } = {}): Promise<string> {
    const pair = await generateKeyPair('RS256', { modulusLength: 2048 });
    const exported = await exportJWK(pair.publicKey);
    // The RFC 7638 thumbprint is stable for a key and unique enough to serve as its id.
    const kid = await calculateJwkThumbprint(exported);
    const jwk: PublicJwk = {
      kid,
      kty: 'RSA',
      alg: 'RS256',
      use: 'sig',
      n: exported.n,
      e: exported.e,
    };

    const entry = { kid, privateKey: pair.privateKey, publicKey: pair.publicKey, jwk };
    this.keys = options.keepPrevious === false ? [entry] : [entry, ...this.keys];
    return kid;
  }

  /** The JWKS document: every key that still verifies, newest first. */
  jwks(): { keys: PublicJwk[] } {
    return { keys: this.keys.map((k) => ({ ...k.jwk })) };
  }

  /** Signs the claims as given; the caller sets `iat`, `exp` and the rest. */
  async sign(claims: JWTPayload): Promise<string> {
    const key = this.current();
    return new SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: key.kid })
      .sign(key.privateKey);
  }

  /** Verifies signature, issuer and expiry; throws if any of them fails. */
  async verify(token: string, options: VerifyOptions): Promise<JWTPayload> {
    const lookup = (header: ProtectedHeaderParameters): CryptoKey => {
      const entry = this.keys.find((k) => k.kid === header.kid);
      if (!entry) throw new Error(`unknown signing key ${String(header.kid)}`);
      return entry.publicKey;
    };

    const { payload } = await jwtVerify(token, lookup, {
      issuer: options.issuer,
      algorithms: ['RS256'],
    });
    return payload;
  }

  private current(): KeyEntry {
    const key = this.keys[0];
    if (!key) throw new Error('no signing key');
    return key;
  }
}
