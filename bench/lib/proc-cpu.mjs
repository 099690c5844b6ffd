// CPU time of a process and every process under it (a cluster primary and its
// workers), from /proc: what the benches report as a server's CPU.
import { readFileSync } from 'node:fs';

/** Clock ticks a second in /proc/<pid>/stat (USER_HZ: 100 on Linux). */
const CLOCK_TICKS = 100;

/** CPU seconds (user + system) one process has used so far; 0 once it is gone. */
function ownCpuSeconds(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

/** CPU seconds (user + system) of `pid` and all its descendants. */
export function treeCpuSeconds(pid) {
  let children = [];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    // gone, or no children file: the process alone
  }
  return ownCpuSeconds(pid) + children.reduce((sum, child) => sum + treeCpuSeconds(child), 0);
}
