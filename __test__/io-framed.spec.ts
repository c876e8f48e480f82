// framed() over kyoto TCP and Unix streams on the default data path, and the JS fallback over
// duplex() pairs. io-framed-mt.spec.ts runs the native cases on the multi_thread data path.
import { defineFramedTests } from './framed-suite';

defineFramedTests({ withJsFallback: true });
