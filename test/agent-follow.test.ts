/**
 * What a running agent does with a changed topology (followTopology): the
 * rule behind the agent command's reaction, on real compiled topologies.
 * The processes themselves are exercised in gateway-live.test.ts.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { agentSettings, followTopology } from '../src/agent/index.js';
import type { AgentSettingsInput } from '../src/agent/index.js';
import type { Topology } from '../src/topology/index.js';
import { compileMesh } from './support/dns.js';
import { tempDir } from './support/run.js';

const work = tempDir('agent-follow');
afterAll(() => work.remove());

let compiles = 0;
function mesh(options: { on?: string; proxy?: string; credential?: string; ports?: string; endpoints?: boolean; gatewayPort?: number } = {}): Topology {
  const dir = join(work.path, String(++compiles));
  mkdirSync(dir);
  const credential = options.credential ?? 'echo';
  return compileMesh(dir, {
    overlays: [{ name: 'afov', network: '100.64.56.0/24', port: 6591 }],
    hosts: [
      { name: 'gw1', ips: ['127.0.56.1'], groups: ['gateway'] },
      { name: 'b1', ips: ['127.0.56.2'], groups: [options.on === 'b2' ? 'idle' : 'web'] },
      { name: 'b2', ips: ['127.0.56.3'], groups: [options.on === 'b2' ? 'web' : 'idle'] },
    ],
    services: `gateway:
  scheduling_group: gateway
  ports: [${options.gatewayPort ?? 8443}]
  service_credentials: [{name: gateway, enable_client: false}]
echo:
  scheduling_group: web
  ports: ${options.ports ?? '[7000]'}
  service_credentials: [{name: ${credential}}]
${options.endpoints === false ? '' : `  gateway_endpoints:\n    - {name: raw, port: 7100, mode: tcp, proxy_protocol: ${options.proxy ?? 'none'}}\n`}`,
  });
}

const input: AgentSettingsInput = { host: 'b1', service: 'echo', credentialsRoot: '/etc/credentials', gateways: [{ address: '127.0.0.1', port: 8443 }], gatewayService: 'gateway' };
const start = agentSettings(mesh(), input);

describe('followTopology', () => {
  it('does nothing when nothing the agent uses changed', () => {
    expect(followTopology(start, mesh(), input)).toEqual({ kind: 'same' });
  });

  it('updates in place for a new PROXY protocol or new backend ports', () => {
    const proxy = followTopology(start, mesh({ proxy: 'v2' }), input);
    expect(proxy.kind).toBe('update');
    expect(proxy.kind === 'update' && proxy.settings.proxyProtocol.get('raw')).toBe('v2');
    const ports = followTopology(start, mesh({ ports: '[7001, 7002]' }), input);
    expect(ports.kind).toBe('update');
    expect(ports.kind === 'update' && [ports.settings.backend.port, ...ports.settings.backendPorts]).toEqual([7001, 7001, 7002]);
  });

  it('redials for a new credential or a new gateway port', () => {
    const credential = followTopology(start, mesh({ credential: 'echo2' }), input);
    expect(credential.kind).toBe('redial');
    expect(credential.kind === 'redial' && credential.settings.files.cert).toBe('/etc/credentials/x509/echo2/client/cert.pem');
    // Gateways found through DNS take the gateway service's port: a new one means a redial.
    const resolved = { ...input, gateways: undefined };
    expect(followTopology(agentSettings(mesh(), resolved), mesh({ gatewayPort: 9443 }), resolved).kind).toBe('redial');
  });

  it('retires when the service leaves the host or loses its endpoints', () => {
    expect(followTopology(start, mesh({ on: 'b2' }), input)).toEqual({ kind: 'retire', why: 'service "echo" no longer runs on host "b1"' });
    expect(followTopology(start, mesh({ endpoints: false }), input)).toEqual({ kind: 'retire', why: 'service "echo" has no gateway endpoints any more' });
  });

  it('keeps running, with the error, when the new settings are unusable otherwise', () => {
    const step = followTopology(start, mesh({ ports: '[]' }), input);
    expect(step.kind).toBe('invalid');
    expect(step.kind === 'invalid' && step.error.code).toBe('AGENT_ERR_SETTINGS');
  });
});
