/**
 * For tests only; not used by src/. The DNS server's parts its tests drive
 * directly, past the front door (index.ts).
 */
export { Zone } from './zone.js';
export { TcpSlots } from './tcp-slots.js';
