import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { AdminServer, DEFAULT_ADMIN_CREDENTIAL, DEFAULT_CREDENTIALS_ROOT_PATH, Gateway, credentialTlsFiles, readTlsFiles } from '../../gateway/index.js';
import type { AdminAuth } from '../../gateway/index.js';
import { MeshplaneError } from '../../errors.js';
import { parseSocketAddress } from '../../lib/socket-address.js';
import type { Command } from '../context.js';
import { daemon, runUntilSignalled, startMetrics } from '../daemon.js';
import { SOURCE_OPTIONS, daemonSource } from '../inputs.js';

export const gatewayCommand: Command = {
  name: 'gateway',
  summary: 'run the gateway: agents register over mTLS, clients are routed to them by SNI, Host or CONNECT',
  usage: `meshplane gateway --topology FILE [options]
meshplane gateway -s services.yml -i hosts.yml [options]

Agents dial in with their client certificates (signed by the mesh CA, not
revoked, listed by the service they register for); client connections on the
front ports of the Topology's gateway endpoints are routed to them. SIGHUP
reloads the topology, the certificates and the CRL without dropping live
connections. Runs until SIGTERM or SIGINT.

  -t, --topology FILE        compiled topology to route by
  -s, --services FILE        or compile services.yml ...
  -i, --inventory FILE       ... with this inventory
      --credential NAME      the gateway's own credential (default gateway)
      --credentials-root DIR where credentials live (default ${DEFAULT_CREDENTIALS_ROOT_PATH})
      --crl FILE             CRL (PEM) of the mesh CA: revoked agents are refused
                             (default: crl.pem beside the credential, if there)
  -l, --listen ADDR:PORT     where agents register (default 0.0.0.0:<the gateway
                             service's first port>, else 8443)
      --front-address ADDR   address the front ports listen on, repeatable
                             (default 0.0.0.0)
      --metrics ADDR:PORT    serve Prometheus metrics at /metrics
      --admin ADDR:PORT      serve the admin API and status page (HTTPS, mutual
                             TLS: callers show an admin credential's client
                             certificate from the mesh CA)
      --admin-credential NAME  credential allowed to use the admin API,
                             repeatable (default ${DEFAULT_ADMIN_CREDENTIAL})
      --admin-token-file FILE  development instead: plain HTTP on a loopback
                             --admin address, "Authorization: Bearer <token>"
      --log-level LEVEL      fatal|error|warn|info|debug (default info)`,
  async run(args, io) {
    const { values } = parseArgs({
      args: [...args],
      options: {
        ...SOURCE_OPTIONS,
        credential: { type: 'string', default: 'gateway' },
        'credentials-root': { type: 'string', default: DEFAULT_CREDENTIALS_ROOT_PATH },
        crl: { type: 'string' },
        listen: { type: 'string', short: 'l' },
        'front-address': { type: 'string', multiple: true },
        metrics: { type: 'string' },
        admin: { type: 'string' },
        'admin-credential': { type: 'string', multiple: true },
        'admin-token-file': { type: 'string' },
        'log-level': { type: 'string', default: process.env['MESHPLANE_LOG_LEVEL'] ?? 'info' },
      },
      strict: true,
    });
    const source = daemonSource(values, io);
    const topology = source.load();
    const { logger, registry } = daemon('gateway', values['log-level']);
    const listen = parseSocketAddress(values.listen ?? `0.0.0.0:${topology.services[values.credential]?.ports[0] ?? 8443}`, 8443);
    const tlsFiles = credentialTlsFiles(values['credentials-root'], values.credential, values.crl ?? defaultCrl(values['credentials-root'], values.credential));
    const gateway = new Gateway({
      topology,
      tls: tlsFiles,
      registration: listen,
      frontAddresses: values['front-address'] ?? ['0.0.0.0'],
      registry,
      logger,
    });
    const adminAddress = values.admin === undefined ? null : parseSocketAddress(values.admin, 9155);
    const adminAuth: AdminAuth =
      values['admin-token-file'] === undefined ? { kind: 'mtls', credentials: values['admin-credential'] ?? [DEFAULT_ADMIN_CREDENTIAL] } : { kind: 'token', token: readToken(values['admin-token-file']) };
    await gateway.start();
    let admin: AdminServer | null = null;
    let adminUrl = '';
    if (adminAddress !== null) {
      try {
        admin = new AdminServer(gateway.adminTarget(), { auth: adminAuth, tls: adminAuth.kind === 'mtls' ? readTlsFiles(tlsFiles) : undefined, logger });
        const port = await admin.start(adminAddress.address, adminAddress.port);
        const host = adminAddress.address.includes(':') ? `[${adminAddress.address}]` : adminAddress.address;
        adminUrl = `; admin API at ${adminAuth.kind === 'mtls' ? 'https' : 'http'}://${host}:${port}/`;
      } catch (err) {
        gateway.close();
        throw err;
      }
    }
    const metrics = await startMetrics(registry, values.metrics, 9154);
    io.stdout(`meshplane gateway: agents register on ${listen.address}:${gateway.port}; fronts ${gateway.frontPorts.join(', ') || '(none)'}${adminUrl}${metrics === null ? '' : `; metrics at ${metrics.url}`}\n`);
    return await runUntilSignalled(logger, {
      reload: async () => {
        try {
          await gateway.reload(source.load());
          admin?.setSecureContext(readTlsFiles(tlsFiles));
        } catch (err) {
          logger.error({ err, code: (err as { code?: string }).code }, 'reload failed; still running with the previous topology and certificates');
        }
      },
      stop: () => {
        gateway.close();
        void admin?.close();
        metrics?.close();
      },
    });
  },
};

/** The CRL the PKI installs beside each credential, when there is one. */
function defaultCrl(root: string, credential: string): string | null {
  const path = join(root, 'x509', credential, 'crl.pem');
  return existsSync(path) ? path : null;
}

/** The development token: one line in a file (not argv, which every user can read in ps). */
function readToken(path: string): string {
  let token: string;
  try {
    token = readFileSync(path, 'utf8').trim();
  } catch (err) {
    throw new MeshplaneError('GW_ERR_ADMIN_CONFIG', `cannot read the admin token file ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (token.length < 16) throw new MeshplaneError('GW_ERR_ADMIN_CONFIG', `the admin token in ${path} is ${token.length === 0 ? 'empty' : 'shorter than 16 characters'}`);
  return token;
}
