// The import reader's thread when kitter runs from its TypeScript sources (tests, the demo):
// tsx first, found from here whatever the working directory, then the reader itself.
import { register } from 'tsx/esm/api';

register();
await import('./reader.ts');
