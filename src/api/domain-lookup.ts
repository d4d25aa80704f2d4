import type { WacCoreClient, WacDomain } from '../clients/wac-core.js';

/**
 * Finds domains by name for request validation. Found domains are remembered for a few
 * seconds, so a burst of user creates in one domain costs one wac-core call; a domain not
 * found is asked for again every time. The worker checks again before writing.
 */
export class DomainLookup {
  private readonly found = new Map<string, { domain: WacDomain; until: number }>();

  constructor(
    private readonly wac: WacCoreClient,
    private readonly ttlMs = 5_000,
  ) {}

  async byName(name: string): Promise<WacDomain | undefined> {
    const key = name.toLowerCase();
    const cached = this.found.get(key);
    if (cached && cached.until > Date.now()) return cached.domain;

    const domain = await this.wac.findDomainByName(key);
    if (domain) this.found.set(key, { domain, until: Date.now() + this.ttlMs });
    else this.found.delete(key);
    return domain;
  }

  forget(name: string): void {
    this.found.delete(name.toLowerCase());
  }
}
