/**
 * `meshplane dns render --engine bind`: the mesh zone with its views as a
 * named.conf fragment and zone files, for BIND 9 on big central servers.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { MeshplaneError, UsageError } from '../../errors.js';
import { DEFAULT_NEGATIVE_TTL, DEFAULT_TTL, parseSocketAddress, renderBind, resolversFromResolvConf, writeBindRender } from '../../dns/index.js';
import type { CommandIO } from '../context.js';
import { EXIT_INVALID, EXIT_OK } from '../context.js';
import { INPUT_OPTIONS, topologyFrom } from '../inputs.js';
import { parseIp } from '../../lib/ip.js';

export const DNS_RENDER_USAGE = `meshplane dns render --engine bind --out DIR (--topology FILE | -s FILE -i FILE) [options]

Writes the mesh zone for BIND 9: DIR/named.conf (one view per overlay set,
matching its hosts' addresses, and a last view "public" for everyone else)
and DIR/<view>/<zone>.zone (the mesh zone and the reverse zones of the
addresses the topology knows; a zone the same in several views is written
once, in the first, and the others take it with in-view). Include
DIR/named.conf from named.conf with
\`directory\` set to DIR. DIR is a symlink swapped to each new render in one
rename, so named never reads half of one; the same topology gives the same
bytes (nothing is written, "unchanged"). Then \`rndc reload\`.

      --engine bind            the server to render for (only bind)
      --out DIR                where the render goes (a symlink the render owns)
  -t, --topology FILE          compiled topology, or -s/-i to compile in process
      --host NAME              the host BIND runs on: loopback askers get its
                               view, and it names the zone's NS
      --ns-address ADDR        without --host: this server's own address,
                               repeatable; ns.<domain> answers them
  -f, --forward ADDR[:PORT]    upstream for other names, repeatable
      --resolv-conf FILE       or the nameservers of this file
                               (default: no forwarding, REFUSED as --no-forward)
      --ttl SECONDS            TTL of answers (default ${DEFAULT_TTL})
      --negative-ttl SECONDS   SOA minimum (default ${DEFAULT_NEGATIVE_TTL})
      --serial N               SOA serial (default: kept while the render is
                               unchanged, else the time in seconds)
      --check                  run named-checkconf -z on the new render before
                               it replaces the old one; a failure keeps the old`;

export async function dnsRender(args: readonly string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...args],
    options: {
      ...INPUT_OPTIONS,
      topology: { type: 'string', short: 't' },
      engine: { type: 'string' },
      out: { type: 'string' },
      host: { type: 'string' },
      'ns-address': { type: 'string', multiple: true },
      forward: { type: 'string', short: 'f', multiple: true },
      'resolv-conf': { type: 'string' },
      ttl: { type: 'string' },
      'negative-ttl': { type: 'string' },
      serial: { type: 'string' },
      check: { type: 'boolean', default: false },
    },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  if (values.engine !== 'bind') throw new UsageError(`--engine bind is required (the one engine rendered for)${values.engine === undefined ? '' : `, not "${values.engine}"`}`);
  if (values.out === undefined) throw new UsageError('--out DIR is required');
  if (values.forward !== undefined && values['resolv-conf'] !== undefined) throw new UsageError('give --forward or --resolv-conf, not both');
  const nsAddresses = (values['ns-address'] ?? []).map((text) => {
    const parsed = parseIp(text);
    if (parsed === undefined) throw new UsageError(`--ns-address must be an IP address, not "${text}"`);
    return parsed.text;
  });
  if (values.host === undefined && nsAddresses.length === 0) throw new UsageError('give --host NAME (BIND on a mesh host) or --ns-address ADDR (a central server: the address ns.<domain> answers)');
  const forwarders =
    values.forward !== undefined
      ? values.forward.map((text) => parseSocketAddress(text))
      : values['resolv-conf'] !== undefined
        ? resolversFromResolvConf(resolve(io.cwd, values['resolv-conf']), [])
        : [];
  const ttl = integer(values.ttl, '--ttl') ?? DEFAULT_TTL;
  const negativeTtl = integer(values['negative-ttl'], '--negative-ttl') ?? DEFAULT_NEGATIVE_TTL;
  const serial = integer(values.serial, '--serial');

  const topology = topologyFrom(values, io);
  if (topology === undefined) return EXIT_INVALID;
  if (values.host !== undefined && !(values.host in topology.hosts)) {
    throw new MeshplaneError('DNS_ERR_UNKNOWN_HOST', `host "${values.host}" is not in the topology; --host must name the host BIND runs on`);
  }
  const out = resolve(io.cwd, values.out);
  const started = performance.now();
  const report = await writeBindRender(out, (s) => renderBind(topology, { host: values.host ?? null, nsAddresses, forwarders, ttl, negativeTtl, serial: s }), {
    check: values.check,
    serial,
  });
  const seconds = ((performance.now() - started) / 1000).toFixed(2);
  io.stdout(report.changed ? `meshplane dns render: ${report.files} files written to ${out} (serial ${report.serial}, ${seconds} s)\n` : `meshplane dns render: ${out} unchanged (serial ${report.serial})\n`);
  return EXIT_OK;
}

function integer(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!/^\d+$/.test(text) || value > 4_294_967_295) throw new UsageError(`${flag} must be an integer from 0 to 4294967295, not "${text}"`);
  return value;
}
