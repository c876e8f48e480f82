// Adversarial scenarios for kyoto/net and kyoto/io on the default data path (see
// scenarios-net-suite.ts); scenarios-net-mt.spec.ts runs them on the multi_thread data path.
import { defineScenarioTests } from './scenarios-net-suite';

defineScenarioTests();
