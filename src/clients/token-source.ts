import KcAdminClient from '@keycloak/keycloak-admin-client';
import { decodeJwt } from 'jose';

import { BackendError } from '../errors.js';
import { backendErrorOf } from './backend-errors.js';

export interface TokenSourceOptions {
  url: string;
  realm: string;
  clientId: string;
  clientSecret: string;
  timeoutMs: number;
  /** Take a new token this long before the old one expires. */
  marginMs?: number;
}

/**
 * Access tokens for kitter's service account (client_credentials). That grant has no refresh
 * token, so the admin client cannot renew it by itself: this source asks for a new token
 * shortly before `exp`, and at once when a backend answers 401 (`invalidate`).
 */
export class TokenSource {
  private readonly kc: KcAdminClient;
  private token: string | undefined;
  private expiresAt = 0;
  private pending: Promise<string> | undefined;

  constructor(private readonly options: TokenSourceOptions) {
    this.kc = new KcAdminClient({
      baseUrl: options.url,
      realmName: options.realm,
      timeout: options.timeoutMs,
    });
  }

  async getAccessToken(): Promise<string> {
    const margin = this.options.marginMs ?? 10_000;
    if (this.token && Date.now() < this.expiresAt - margin) return this.token;

    // One request for a token at a time, however many calls are waiting for it.
    this.pending ??= this.fetchToken().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  /** Forgets the current token, so the next call gets a new one. */
  invalidate(token?: string): void {
    if (token === undefined || token === this.token) {
      this.token = undefined;
      this.expiresAt = 0;
    }
  }

  private async fetchToken(): Promise<string> {
    try {
      await this.kc.auth({
        grantType: 'client_credentials',
        clientId: this.options.clientId,
        clientSecret: this.options.clientSecret,
      });
    } catch (err) {
      throw backendErrorOf(err, 'token');
    }

    const token = this.kc.accessToken;
    if (!token) {
      throw new BackendError('keycloak', 'token', 'rejected', undefined, 'no access token');
    }

    const { exp } = decodeJwt(token);
    // Without exp, use the token for a minute (the shortest lifetime Keycloak gives by default).
    this.expiresAt = typeof exp === 'number' ? exp * 1000 : Date.now() + 60_000;
    this.token = token;
    return token;
  }
}
