/**
 * SIGHUP during start-up. Node's default for SIGHUP is to exit, and a daemon
 * installs its reload handler only once it serves; a reload sent in between
 * (a unit restarted while Ansible or a CRL copy sends `systemctl reload`)
 * used to kill it. The entry point holds hangups from its first statement;
 * a daemon replays one reload when it serves, and every other command gets
 * the default back (a pending hangup is re-raised).
 */
let held = false;
let pending = false;
const remember = (): void => {
  pending = true;
};

/** First thing in the entry point, before the command's modules load. */
export function holdHangups(): void {
  if (held) return;
  held = true;
  process.on('SIGHUP', remember);
}

/** For daemons, once their own SIGHUP handler is in place: true when a hangup came while held. */
export function takeHeldHangup(): boolean {
  const hadOne = pending;
  if (held) process.off('SIGHUP', remember);
  held = false;
  pending = false;
  return hadOne;
}

/** For commands that do not reload: SIGHUP ends them again, as it would have. */
export function releaseHangups(): void {
  if (takeHeldHangup()) process.kill(process.pid, 'SIGHUP');
}
