import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { watchFiles } from '../../lib/watch-files.js';
import { AdminServer, DEFAULT_ADMIN_CREDENTIAL, Gateway, credentialTlsFiles, readTlsFiles } from '../../gateway/index.js';
import type { AdminAuth, LimitSettings } from '../../gateway/index.js';
import { MeshplaneError, UsageError } from '../../errors.js';
import { DEFAULT_LOG_SAMPLING } from '../../lib/log-sampler.js';
import { parseSocketAddress } from '../../lib/socket-address.js';
import { DEFAULT_CREDENTIALS_ROOT, LiveTopology, credentialFiles, registrationPort } from '../../topology/index.js';
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
front ports of the Topology's gateway endpoints are routed to them. Edits
of the topology files are followed (a broken edit keeps the last good
topology), and so are the gateway's certificate, key, CA and CRL (renewed
or revoked: no restart); SIGHUP reloads all of them at once. Live
connections survive either, except those of agents whose instance left the
topology. Runs until SIGTERM or SIGINT.

  -t, --topology FILE        compiled topology to route by
  -s, --services FILE        or compile services.yml ...
  -i, --inventory FILE       ... with this inventory
      --credential NAME      the gateway's own credential (default gateway)
      --credentials-root DIR where credentials live (default ${DEFAULT_CREDENTIALS_ROOT})
      --crl FILE             CRL (PEM) of the mesh CA: revoked agents are refused
                             (default: crl.pem beside the credential, if there)
  -l, --listen ADDR:PORT     where agents register (default 0.0.0.0:<the first
                             port of the service named gateway>, else 8443)
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
      --allow-legacy-identity  migration aid: accept agent certificates that carry
                             no workload identity URI (issued before it existed;
                             no host binding for them). Reissue, then drop it
      --no-watch             reload on SIGHUP only, not on file changes (topology,
                             and the credential's certificate, key, CA and CRL)
      --log-level LEVEL      fatal|error|warn|info|debug (default info)

Limits (see the gateway README, "Limits"); a connection over a cap is closed
at once. Caps left unset split the open-file limit (RLIMIT_NOFILE): an
eighth kept back, the admin port a sixteenth of the rest (at most 64), the
registration port a quarter, the front ports the remainder equally.
      --max-connections N    open connections per front port (all its addresses)
      --max-agent-connections N  open connections on the registration port
      --max-admin-connections N  open connections on the admin port
      --max-connections-per-source N  per client address (IPv6: per /64) on each
                             port (default a tenth of that port's cap, at least 8)
      --handshake-timeout S  TLS handshake deadline, registration and admin
                             ports, from accept (default 10)
      --head-timeout S       deadline for a front connection's TLS hello or
                             request head, from accept (default 10)
      --admin-request-timeout S  deadline for an admin request, from its first
                             byte (default 10)
      --log-refusals N       refusal log lines per reason per interval; the rest
                             are counted in one summary line (default 10)
      --log-refusals-interval S  that interval (default 10)`,
  async run(args, io) {
    const { values } = parseArgs({
      args: [...args],
      options: {
        ...SOURCE_OPTIONS,
        credential: { type: 'string', default: 'gateway' },
        'credentials-root': { type: 'string', default: DEFAULT_CREDENTIALS_ROOT },
        crl: { type: 'string' },
        listen: { type: 'string', short: 'l' },
        'front-address': { type: 'string', multiple: true },
        metrics: { type: 'string' },
        admin: { type: 'string' },
        'admin-credential': { type: 'string', multiple: true },
        'admin-token-file': { type: 'string' },
        'no-watch': { type: 'boolean', default: false },
        'allow-legacy-identity': { type: 'boolean', default: false },
        'log-level': { type: 'string', default: process.env['MESHPLANE_LOG_LEVEL'] ?? 'info' },
        'max-connections': { type: 'string' },
        'max-agent-connections': { type: 'string' },
        'max-admin-connections': { type: 'string' },
        'max-connections-per-source': { type: 'string' },
        'handshake-timeout': { type: 'string' },
        'head-timeout': { type: 'string' },
        'admin-request-timeout': { type: 'string' },
        'log-refusals': { type: 'string' },
        'log-refusals-interval': { type: 'string' },
      },
      strict: true,
    });
    // Flags first: a mistyped limit is a usage error whatever the topology.
    const count = (flag: keyof typeof values): number | undefined => positive(values, flag, 'a whole number above 0', (n) => Number.isInteger(n));
    const millis = (flag: keyof typeof values): number | undefined => {
      const seconds = positive(values, flag, 'seconds above 0', () => true);
      return seconds === undefined ? undefined : Math.round(seconds * 1000);
    };
    const limits: LimitSettings = {
      maxConnections: count('max-connections'),
      maxAgentConnections: count('max-agent-connections'),
      maxAdminConnections: count('max-admin-connections'),
      maxConnectionsPerSource: count('max-connections-per-source'),
      handshakeTimeoutMs: millis('handshake-timeout'),
    };
    const logBurst = values['log-refusals'] === '0' ? 0 : count('log-refusals');
    const logInterval = millis('log-refusals-interval');
    const adminRequestTimeoutMs = millis('admin-request-timeout');
    const source = daemonSource(values, io);
    const { logger, registry } = daemon('gateway', values['log-level']);
    const live = new LiveTopology(source, { watch: !values['no-watch'], logger });
    const topology = live.start();
    const listen = parseSocketAddress(values.listen ?? `0.0.0.0:${registrationPort(topology)}`, registrationPort(topology));
    // Without --crl, the crl.pem beside the credential, read when it is there (and followed: one written later counts).
    const tlsFiles = values.crl !== undefined ? credentialTlsFiles(values['credentials-root'], values.credential, values.crl) : { ...credentialTlsFiles(values['credentials-root'], values.credential, defaultCrl(values['credentials-root'], values.credential)), crlOptional: true };
    const gateway = new Gateway({
      topology,
      tls: tlsFiles,
      registration: listen,
      frontAddresses: values['front-address'] ?? ['0.0.0.0'],
      peekTimeoutMs: millis('head-timeout'),
      limits,
      logSampling: { burst: logBurst ?? DEFAULT_LOG_SAMPLING.burst, intervalMs: logInterval ?? DEFAULT_LOG_SAMPLING.intervalMs },
      registry,
      logger,
      allowLegacyIdentity: values['allow-legacy-identity'],
    });
    const adminAddress = values.admin === undefined ? null : parseSocketAddress(values.admin, 9155);
    const adminAuth: AdminAuth =
      values['admin-token-file'] === undefined ? { kind: 'mtls', credentials: values['admin-credential'] ?? [DEFAULT_ADMIN_CREDENTIAL] } : { kind: 'token', token: readToken(values['admin-token-file']) };
    try {
      await gateway.start();
    } catch (err) {
      live.close();
      throw err;
    }
    let admin: AdminServer | null = null;
    let adminUrl = '';
    if (adminAddress !== null) {
      try {
        let adminPort = 0;
        admin = new AdminServer(gateway.adminTarget(), {
          auth: adminAuth,
          tls: adminAuth.kind === 'mtls' ? readTlsFiles(tlsFiles) : undefined,
          logger,
          limits: gateway.adminLimits(),
          requestTimeoutMs: adminRequestTimeoutMs,
          events: gateway.adminEvents(() => adminPort),
        });
        const port = (adminPort = await admin.start(adminAddress.address, adminAddress.port));
        const host = adminAddress.address.includes(':') ? `[${adminAddress.address}]` : adminAddress.address;
        adminUrl = `; admin API at ${adminAuth.kind === 'mtls' ? 'https' : 'http'}://${host}:${port}/`;
      } catch (err) {
        gateway.close();
        live.close();
        throw err;
      }
    }
    /** The topology (changed or not) and the certificates, CRL and limits read again. */
    const apply = async (current: typeof topology): Promise<void> => {
      try {
        await gateway.reload(current);
        admin?.setSecureContext(readTlsFiles(tlsFiles));
        admin?.setLimits(gateway.adminLimits());
      } catch (err) {
        logger.error({ err, code: (err as { code?: string }).code }, 'reload failed; still running with the previous topology and certificates');
      }
    };
    live.subscribe((change) => apply(change.current));
    // Renewed certificates and a new CRL are picked up when their files change (installs rename
    // them into place), without SIGHUP: new handshakes use them, agents the CRL revokes are dropped.
    const credentialWatch = values['no-watch']
      ? null
      : watchFiles([tlsFiles.ca, tlsFiles.cert, tlsFiles.key, ...(tlsFiles.crl === null ? [] : [tlsFiles.crl])], () => {
          logger.info({ credential: values.credential }, 'credential files changed; reloading certificates and CRL');
          void apply(live.current);
        });
    // An edit accepted while the listeners were opening: the subscriber came too late for it.
    if (live.current !== topology) await apply(live.current);
    const metrics = await startMetrics(registry, values.metrics, 9154);
    io.stdout(`meshplane gateway: agents register on ${listen.address}:${gateway.port}; fronts ${gateway.frontPorts.join(', ') || '(none)'}${adminUrl}${metrics === null ? '' : `; metrics at ${metrics.url}`}\n`);
    return await runUntilSignalled(logger, {
      reload: async () => {
        // A changed topology is applied (certificates too) by the subscriber; otherwise SIGHUP
        // still means "read the certificates and the CRL again", with the last good topology.
        if ((await live.reload('SIGHUP')) !== 'success') await apply(live.current);
      },
      stop: () => {
        credentialWatch?.close();
        live.close();
        gateway.close();
        void admin?.close();
        metrics?.close();
      },
    });
  },
};

/** A flag's number, checked; undefined when the flag is absent. */
function positive(values: Record<string, unknown>, flag: string, what: string, ok: (n: number) => boolean): number | undefined {
  const text = values[flag];
  if (typeof text !== 'string') return undefined;
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || n <= 0 || !ok(n)) throw new UsageError(`--${flag} must be ${what}, not "${text}"`);
  return n;
}

/** The CRL the PKI installs beside each credential, when there is one. */
function defaultCrl(root: string, credential: string): string {
  return credentialFiles(root, credential, 'server').crl;
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
