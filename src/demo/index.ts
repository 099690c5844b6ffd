/**
 * Demo: the PROXY-reading backend `meshplane up` puts behind the example
 * mesh's gateway endpoints (backend.ts).
 */
export { startDemoBackend } from './backend.js';
