/**
 * The read-only status page at `/` of the admin API: one self-contained
 * HTML document whose script fetches /backends every few seconds and redraws
 * a table per service (health, load, connections, RTT). Values are put in
 * with textContent only: health-check reasons come from backends. With the
 * development token, the page was opened as /?token=...; the script sends
 * the same token on its requests.
 */

export const STATUS_PAGE_REFRESH_MS = 2000;

export function statusPage(nonce: string, refreshMs: number): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>meshplane gateway</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
  table { border-collapse: collapse; margin-bottom: 1.5em; }
  th, td { border-bottom: 1px solid #ddd; padding: .3em .8em; text-align: left; }
  .healthy { color: #17702a; } .unhealthy { color: #b00020; } .unknown, .unchecked { color: #777; }
  #state { color: #777; }
</style>
</head>
<body>
<h1>meshplane gateway</h1>
<p id="state">loading…</p>
<div id="services"></div>
<script nonce="${nonce}">
(() => {
  const token = new URLSearchParams(location.search).get('token');
  const headers = token === null ? {} : { authorization: 'Bearer ' + token };
  const cell = (row, text, cls) => { const td = row.insertCell(); td.textContent = text; if (cls) td.className = cls; return td; };
  function render(backends) {
    const byService = new Map();
    for (const b of backends) byService.set(b.service, [...(byService.get(b.service) || []), b]);
    const root = document.getElementById('services');
    root.replaceChildren();
    if (backends.length === 0) { const p = document.createElement('p'); p.id = 'empty'; p.textContent = 'No backends connected.'; root.append(p); }
    for (const [service, list] of [...byService].sort((a, b) => a[0].localeCompare(b[0]))) {
      const h = document.createElement('h2'); h.textContent = service + ' (' + list.length + ')'; root.append(h);
      const table = document.createElement('table'); table.dataset.service = service;
      const head = table.createTHead().insertRow();
      for (const title of ['backend', 'host', 'agent address', 'health', 'reason', 'load', 'connections', 'RTT', 'connected since']) { const th = document.createElement('th'); th.textContent = title; head.append(th); }
      const body = table.createTBody();
      for (const b of list) {
        const row = body.insertRow(); row.dataset.backend = b.id;
        cell(row, b.id); cell(row, b.host); cell(row, b.agent_address);
        cell(row, b.health + (b.ejected_until ? ' (ejected)' : ''), b.health);
        cell(row, Object.values(b.checks).map((c) => c.reason).filter(Boolean).join('; '));
        cell(row, b.load === null ? '–' : String(b.load)); cell(row, String(b.open_connections));
        cell(row, b.rtt_ms === null ? '–' : b.rtt_ms.toFixed(2) + ' ms'); cell(row, b.connected_since);
      }
      root.append(table);
    }
  }
  async function refresh() {
    const state = document.getElementById('state');
    try {
      const response = await fetch('backends', { headers, cache: 'no-store' });
      const data = await response.json();
      if (!response.ok) throw new Error(data.code + ': ' + data.message);
      render(data.backends);
      state.textContent = 'updated ' + new Date().toLocaleTimeString() + ' (every ${refreshMs / 1000} s)';
    } catch (err) {
      state.textContent = 'cannot refresh: ' + err.message;
    }
  }
  refresh();
  setInterval(refresh, ${refreshMs});
})();
</script>
</body>
</html>
`;
}
