// Write order under backpressure (write-order-suite.ts) on the default data path.
import { defineWriteOrderTests } from './write-order-suite';

defineWriteOrderTests();
