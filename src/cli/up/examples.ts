/** The commands `up` prints to try the mesh: dig for DNS views, curl through each gateway front. */
import { join } from 'node:path';
import type { Topology } from '../../topology/index.js';
import type { GatewaySpec } from './gateway.js';

/** A few dig commands that show views: the same name asked as different hosts. */
export function digExamples(topology: Topology, address: string, port: number): string[] {
  const service = Object.values(topology.services).find((s) => s.instances.length > 1) ?? Object.values(topology.services)[0];
  const hosts = Object.values(topology.hosts);
  const onOverlay = hosts.find((h) => Object.keys(h.overlays).length > 0);
  const offOverlay = hosts.find((h) => Object.keys(h.overlays).length === 0);
  const lines: string[] = [];
  const dig = (asker: (typeof hosts)[number] | undefined, name: string, note: string): void => {
    if (asker === undefined) return;
    const source = asker.ips.find((ip) => !ip.includes(':'));
    if (source === undefined) return;
    lines.push(`dig @${address} -p ${port} -b ${source} +short ${name}   # as ${asker.name}: ${note}`);
  };
  if (service !== undefined) {
    dig(onOverlay, `${service.name}.${topology.domain}`, 'overlay addresses where it shares an overlay');
    dig(offOverlay, `${service.name}.${topology.domain}`, 'on no overlay: public addresses');
    if (service.master !== null) dig(offOverlay ?? onOverlay, `${service.name}-master.${topology.domain}`, 'the master');
  }
  if (hosts[0] !== undefined) dig(offOverlay ?? onOverlay, `${hosts[0].name}.${topology.domain}`, 'a host');
  return lines;
}

/** One curl command per gateway endpoint of every exposed service, through the gateway's first front address. */
export function curlExamples(topology: Topology, stateDir: string, gateway: GatewaySpec): string[] {
  const front = gateway.fronts[0] ?? '127.0.0.1';
  const examples: string[] = [];
  for (const service of Object.values(topology.services)) {
    const first = service.instances[0];
    const port = service.ports[0];
    const credential = service.credentials.map((name) => topology.credentials[name]).find((c) => c?.enable_client === true);
    if (first === undefined || port === undefined || credential === undefined) continue;
    const caFile = join(stateDir, 'credentials', first.host, 'x509', credential.name, 'ca.pem');
    for (const endpoint of service.gateway_endpoints) {
      const name = endpoint.hostnames[0] ?? `${service.name}.${topology.domain}`;
      if (endpoint.mode === 'tls') examples.push(`curl --cacert ${caFile} --resolve ${name}:${endpoint.port}:${front} https://${name}:${endpoint.port}/`);
      if (endpoint.mode === 'http') examples.push(`curl --resolve ${name}:${endpoint.port}:${front} http://${name}:${endpoint.port}/`);
      if (endpoint.mode === 'connect') examples.push(`curl --proxytunnel -x http://${front}:${endpoint.port} http://${service.name}.${topology.domain}:${port}/`);
    }
  }
  return examples;
}
