// Datagram queue semantics (dgram-suite.ts) on the default data path.
import { defineDgramTests } from './dgram-suite';

defineDgramTests();
