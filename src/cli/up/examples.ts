/** The commands `up` prints to try the mesh: dig for DNS views, curl through each gateway front. */
import { credentialFiles, hostFqdn, masterNames, serviceNames, stateCredentialsRoot } from '../../topology/index.js';
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
    dig(onOverlay, serviceNames(topology, service.name).fqdn, 'overlay addresses where it shares an overlay');
    dig(offOverlay, serviceNames(topology, service.name).fqdn, 'on no overlay: public addresses');
    if (service.master !== null) dig(offOverlay ?? onOverlay, masterNames(topology, service.name).fqdn, 'the master');
  }
  if (hosts[0] !== undefined) dig(offOverlay ?? onOverlay, hostFqdn(topology, hosts[0].name), 'a host');
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
    const caFile = credentialFiles(stateCredentialsRoot(stateDir, first.host), credential.name, 'client').ca;
    for (const endpoint of service.gateway_endpoints) {
      const name = endpoint.hostnames[0] ?? serviceNames(topology, service.name).fqdn;
      if (endpoint.mode === 'tls') examples.push(`curl --cacert ${caFile} --resolve ${name}:${endpoint.port}:${front} https://${name}:${endpoint.port}/`);
      if (endpoint.mode === 'http') examples.push(`curl --resolve ${name}:${endpoint.port}:${front} http://${name}:${endpoint.port}/`);
      // A tcp front forwards the whole port: plain HTTP to the demo backend shows it.
      if (endpoint.mode === 'tcp') examples.push(`curl http://${front}:${endpoint.port}/`);
      if (endpoint.mode === 'connect') examples.push(`curl --proxytunnel -x http://${front}:${endpoint.port} http://${serviceNames(topology, service.name).fqdn}:${port}/`);
    }
  }
  return examples;
}
