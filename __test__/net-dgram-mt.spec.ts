// Datagram queue semantics (dgram-suite.ts) on the multi_thread data path.
import './multi-thread-flavor';
import test from 'ava';
import { netFlavor } from 'kyoto';
import { defineDgramTests } from './dgram-suite';

test('this file runs on the multi_thread data path', (t) => {
  t.is(netFlavor, 'multi_thread');
});

defineDgramTests();
