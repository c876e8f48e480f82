// Imported first by a spec file: selects the multi_thread data path before kyoto/net initialises
// (each ava test file runs in its own process).
process.env.KYOTO_NET_FLAVOR = 'multi_thread';
