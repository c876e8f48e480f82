// Link-local and multicast IPv6. The calls and their errors are checked on loopback; traffic,
// which loopback alone cannot carry, in a network namespace of the test's own with a veth pair
// (`runInLinkNamespace`, Linux), so no host interface sees a packet.
import test from 'ava';
import { TcpStream, UdpSocket } from 'kyoto';
import { linuxTest, runInLinkNamespace } from './helpers';

test('IPv6 multicast calls take an interface index and validate their arguments', async (t) => {
  const a = await UdpSocket.bind('[::1]:0');
  t.notThrows(() => {
    a.setMulticastLoopV6(false);
    a.setMulticastHopsV6(3);
    a.setMulticastInterfaceV6(0);
  });
  // Membership is the kernel's to grant (any host can join on its loopback interface, index 1 on
  // Linux, macOS and Windows); what must hold is that join and leave pair up.
  let joined = true;
  try {
    a.joinMulticastV6('ff02::1234', 1);
  } catch (e) {
    joined = false;
    t.is(typeof (e as { code?: unknown }).code, 'string');
  }
  if (joined) {
    a.leaveMulticastV6('ff02::1234', 1);
    // Leaving twice: EADDRNOTAVAIL from a Unix kernel; Winsock's code differs (EINVAL under Wine).
    const e = t.throws(() => a.leaveMulticastV6('ff02::1234', 1)) as { code?: string; syscall?: string };
    if (process.platform !== 'win32') t.is(e.code, 'EADDRNOTAVAIL');
    t.is(e.syscall, 'dropMembership');
  }
  const bad = t.throws(() => a.joinMulticastV6('239.1.2.3'), { code: 'EINVAL' }) as { syscall?: string };
  t.is(bad.syscall, 'addMembership');
  t.throws(() => a.joinMulticastV6(1 as unknown as string), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => a.joinMulticastV6('ff02::1', -1), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => a.setMulticastHopsV6(256), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => a.setMulticastInterfaceV6(1.5), { code: 'ERR_OUT_OF_RANGE' });
  const v4 = await UdpSocket.bind('127.0.0.1:0');
  const refused = t.throws(() => v4.joinMulticastV6('ff02::1234'), undefined, 'an IPv4 socket refuses IPv6 membership') as { syscall?: string };
  t.is(refused.syscall, 'addMembership');
  v4.close();
  a.close();
});

test('an IPv6 address with an unknown zone is refused with EINVAL', async (t) => {
  await t.throwsAsync(TcpStream.connect({ host: 'fe80::1%no-such-interface9', port: 1 }), { code: 'EINVAL' });
  await t.throwsAsync(UdpSocket.bind({ host: 'fe80::1%no-such-interface9', port: 0 }), { code: 'EINVAL' });
});

linuxTest('a zoned link-local address connects, and every address of the connection reports the zone', async (t) => {
  const out = await runInLinkNamespace(
    `const { TcpListener, TcpStream } = require('kyoto/net');
     (async () => {
       const l = await TcpListener.bind({ host: 'fe80::1%v0', port: 0 });
       const port = l.localAddr().port;
       const c = await TcpStream.connect({ host: 'fe80::1%v0', port });
       const [s, peer] = await l.accept();
       await c.write(Buffer.from('ping'));
       const buf = Buffer.alloc(4);
       await s.readExact(buf);
       console.log(JSON.stringify({
         listener: l.localAddr().address, peer: peer.address, serverLocal: s.localAddr().address,
         clientPeer: c.peerAddr(), got: buf.toString(), samePort: peer.port === c.localAddr().port,
       }));
       c.close(); s.close(); l.close();
     })().catch((e) => { console.error(e); process.exit(1); });`,
    20_000,
  );
  const r = JSON.parse(out);
  t.is(r.listener, 'fe80::1%v0');
  t.is(r.peer, 'fe80::1%v0');
  t.is(r.serverLocal, 'fe80::1%v0');
  t.like(r.clientPeer, { address: 'fe80::1%v0', family: 'IPv6' });
  t.is(r.got, 'ping');
  t.true(r.samePort);
});

linuxTest('a UDP socket that joined an IPv6 group receives what is sent to it, and stops after leaving', async (t) => {
  const out = await runInLinkNamespace(
    `const { UdpSocket } = require('kyoto/net');
     const os = require('node:os');
     (async () => {
       const v0 = os.networkInterfaces().v0.find((a) => a.family === 'IPv6').scopeid;
       const r = await UdpSocket.bind({ host: '::', port: 0 });
       const port = r.localAddr().port;
       r.joinMulticastV6('ff02::1234', v0);
       const s = await UdpSocket.bind({ host: '::', port: 0 });
       s.setMulticastLoopV6(true);
       s.setMulticastHopsV6(1);
       const buf = Buffer.alloc(16);
       const seen = [];
       // The zone of the destination picks the interface...
       await s.sendTo(Buffer.from('zone'), { address: 'ff02::1234%v0', port });
       let d = await r.recvFrom(buf);
       seen.push([buf.toString('utf8', 0, d.bytes), d.address.address]);
       // ...or the socket's multicast interface does.
       s.setMulticastInterfaceV6(v0);
       await s.sendTo(Buffer.from('iface'), { address: 'ff02::1234', port });
       d = await r.recvFrom(buf);
       seen.push([buf.toString('utf8', 0, d.bytes), d.address.address]);
       r.leaveMulticastV6('ff02::1234', v0);
       await s.sendTo(Buffer.from('after'), { address: 'ff02::1234%v0', port });
       const late = await r.recv(buf, { signal: AbortSignal.timeout(300) }).then(() => 'received', (e) => e.name);
       console.log(JSON.stringify({ seen, late }));
       r.close(); s.close();
     })().catch((e) => { console.error(e); process.exit(1); });`,
    20_000,
  );
  const r = JSON.parse(out);
  t.deepEqual(r.seen, [
    ['zone', 'fe80::1%v0'],
    ['iface', 'fe80::1%v0'],
  ]);
  t.is(r.late, 'TimeoutError', 'nothing arrives once the group is left');
});

linuxTest('compat/dgram carries IPv6 multicast as node:dgram does, rinfo zone included', async (t) => {
  const script = (mod: string): string =>
    `const dgram = require('${mod}');
     const r = dgram.createSocket('udp6');
     r.bind(0, '::', () => {
       r.addMembership('ff02::1234', '::%v0');
       const s = dgram.createSocket('udp6');
       s.bind(0, () => {
         s.setMulticastInterface('::%v0');
         s.setMulticastLoopback(true);
         s.setMulticastTTL(1);
         s.send('hello', r.address().port, 'ff02::1234', (err) => { if (err) throw err; });
       });
       r.on('message', (m, rinfo) => {
         console.log(JSON.stringify({ m: String(m), address: rinfo.address, family: rinfo.family }));
         r.dropMembership('ff02::1234', '::%v0');
         r.close(); s.close();
       });
     });`;
  const viaNode = await runInLinkNamespace(script('node:dgram'), 20_000);
  const viaKyoto = await runInLinkNamespace(script('kyoto/compat/dgram'), 20_000);
  t.is(viaKyoto, viaNode);
  t.deepEqual(JSON.parse(viaKyoto), { m: 'hello', address: 'fe80::1%v0', family: 'IPv6' });
});
