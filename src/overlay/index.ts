/**
 * Overlay: per-host tinc 1.0 and WireGuard configuration, key pairs made on
 * the host, and the nftables firewall around the mesh's ports, all from the
 * compiled Topology. See README.md.
 */
export { renderHost, DEFAULT_GATEWAY_GROUP } from './render.js';
export { writeRendered } from './write.js';
export { generateHostKeys } from './keygen.js';
export { OverlayError, describeProblem } from './errors.js';
export { paths } from './paths.js';
