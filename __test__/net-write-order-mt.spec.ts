// Write order under backpressure (write-order-suite.ts) on the multi_thread data path.
import './multi-thread-flavor';
import test from 'ava';
import { netFlavor } from 'kyoto';
import { defineWriteOrderTests } from './write-order-suite';

test('this file runs on the multi_thread data path', (t) => {
  t.is(netFlavor, 'multi_thread');
});

defineWriteOrderTests();
