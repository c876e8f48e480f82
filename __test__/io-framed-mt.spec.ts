// The native framed() tests of io-framed.spec.ts on the multi_thread data path.
import './multi-thread-flavor';
import test from 'ava';
import { netFlavor } from 'kyoto';
import { defineFramedTests } from './framed-suite';

test('this file runs on the multi_thread data path', (t) => {
  t.is(netFlavor, 'multi_thread');
});

defineFramedTests({ withJsFallback: false });
