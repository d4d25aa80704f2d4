import { expect } from 'chai';

import { backendErrorOf } from '../../src/clients/backend-errors.js';
import { BackendError, apiErrorOf, kindOfStatus } from '../../src/errors.js';
import { decodeFailure, encodeFailure } from '../../src/jobs/outcome.js';
import { ApiError } from '../../src/errors.js';

describe('backend error classification', () => {
  const cases: Array<[number, string, boolean]> = [
    [400, 'rejected', false],
    [401, 'unauthorized', true],
    [403, 'forbidden', false],
    [404, 'not_found', false],
    [409, 'conflict', false],
    [422, 'rejected', false],
    [429, 'rate_limited', true],
    [500, 'unavailable', true],
    [502, 'unavailable', true],
    [503, 'unavailable', true],
  ];

  for (const [status, kind, retryable] of cases) {
    it(`takes HTTP ${status} as ${kind}, ${retryable ? '' : 'not '}worth a retry`, () => {
      const err = new BackendError('keycloak', 'create user', kindOfStatus(status), status, '');

      expect(err.kind).to.equal(kind);
      expect(err.retryable).to.equal(retryable);
    });
  }

  it('takes a refused connection as a transport failure worth a retry', () => {
    const refused = Object.assign(new TypeError('fetch failed'), {
      cause: { code: 'ECONNREFUSED' },
    });

    const err = backendErrorOf(refused, 'create user');

    expect(err.kind).to.equal('transport');
    expect(err.detail).to.equal('ECONNREFUSED');
    expect(err.retryable).to.equal(true);
  });

  it('takes an aborted or timed-out request as a timeout', () => {
    const timeout = Object.assign(new Error('timed out'), { name: 'TimeoutError' });
    const headers = Object.assign(new Error('slow'), { name: 'HeadersTimeoutError' });

    expect(backendErrorOf(timeout, 'get user').kind).to.equal('timeout');
    expect(backendErrorOf(headers, 'get user').kind).to.equal('timeout');
  });

  it('keeps what Keycloak said from either of its error shapes', () => {
    const conflict = {
      response: { status: 409 },
      responseData: { errorMessage: 'User exists with same username' },
    };
    const policy = {
      response: { status: 400 },
      responseData: {
        error: 'invalidPasswordMinLengthMessage',
        error_description: 'Invalid password: minimum length 8.',
      },
    };

    expect(backendErrorOf(conflict, 'create user').detail).to.equal(
      'User exists with same username',
    );
    expect(backendErrorOf(policy, 'reset password').detail).to.equal(
      'Invalid password: minimum length 8.',
    );
  });
});

describe('answers for backend failures', () => {
  const answer = (kind: ConstructorParameters<typeof BackendError>[2], status?: number) =>
    apiErrorOf(new BackendError('keycloak', 'create user', kind, status, 'said this'));

  it('answers a conflict with 409 and what the backend said', () => {
    const err = answer('conflict', 409);

    expect([err.status, err.code]).to.deep.equal([409, 'conflict']);
    expect(err.message).to.equal('Keycloak refused create user: said this');
  });

  it('answers a backend 403 as kitter misconfigured (502), not the caller’s fault', () => {
    expect(answer('forbidden', 403).status).to.equal(502);
    expect(answer('forbidden', 403).code).to.equal('backend_misconfigured');
  });

  it('answers an outage with 503 backend_unavailable', () => {
    for (const kind of ['transport', 'timeout', 'unavailable', 'rate_limited'] as const) {
      expect(answer(kind).status).to.equal(503);
      expect(answer(kind).code).to.equal('backend_unavailable');
    }
  });
});

describe('failed job reasons', () => {
  it('round-trips status, code and sentence', () => {
    const reason = encodeFailure(new ApiError(409, 'conflict', 'Keycloak refused: taken'));

    expect(reason).to.equal('409 conflict: Keycloak refused: taken');
    expect(decodeFailure(reason)).to.deep.equal({
      status: 409,
      code: 'conflict',
      error: 'Keycloak refused: taken',
    });
  });

  it('answers a reason kitter did not write with a plain 500', () => {
    expect(decodeFailure('job stalled more than allowable limit')).to.deep.equal({
      status: 500,
      code: 'internal_error',
      error: 'the job failed unexpectedly',
    });
  });
});
