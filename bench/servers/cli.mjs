// What every benchmark server shares: its command line (`--host`, `--port`, flags, `--name value`
// options) and a clean exit on SIGTERM/SIGINT. Tiny on purpose: it loads into every server measured,
// kyoto's and node's alike.
const args = process.argv.slice(2);

/** The value after `--name`, or `dflt`. */
export function opt(name, dflt) {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
}

/** Whether `--name` was given. */
export const flag = (name) => args.includes(`--${name}`);

export const host = opt('host', '127.0.0.1');
export const port = Number(opt('port', '0'));

const quit = () => process.exit(0);
process.on('SIGTERM', quit);
process.on('SIGINT', quit);
