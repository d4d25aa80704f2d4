import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Paths whose values never reach a log line. Secrets are also kept out of log calls in the
 * first place; this is the second line of defence.
 */
export const REDACTED_PATHS = [
  'password',
  '*.password',
  '*.*.password',
  '*.*.*.password',
  '*.*.*.*.password',
  'credentials',
  '*.credentials',
  '*.*.credentials',
  'secrets',
  '*.secrets',
  '*.*.secrets',
  'token',
  '*.token',
  'access_token',
  '*.access_token',
  'clientSecret',
  '*.clientSecret',
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
];

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'kitter' },
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}
