// The scenarios of scenarios-net.spec.ts on the multi_thread data path.
import './multi-thread-flavor';
import test from 'ava';
import { netFlavor } from 'kyoto';
import { defineScenarioTests } from './scenarios-net-suite';

test('this file runs on the multi_thread data path', (t) => {
  t.is(netFlavor, 'multi_thread');
});

defineScenarioTests();
