import { readFile } from 'node:fs/promises';

/** The page's files, beside this module in src/ and copied beside it into dist/ by the build. */
const DIR = new URL('./dashboard/', import.meta.url);
const STYLESHEET = '<link rel="stylesheet" href="dashboard.css">';
const SCRIPT = '<script src="dashboard.js"></script>';

async function read(name: string): Promise<string> {
  const url = new URL(name, DIR);
  try {
    return await readFile(url, 'utf8');
  } catch (error: unknown) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`dashboard: cannot read ${url.pathname}: ${reason}`, { cause: error });
  }
}

/**
 * The dashboard: one self-contained page (no CDN, no build step: machines running Quanta may
 * have no internet). Its markup, stylesheet and script are real files under `dashboard/` (open
 * `index.html` from disk to work on them); the server reads them once at start and serves one
 * document with the stylesheet and the script inlined, so the page needs no other request. Plain
 * JS fetches /api/overview every 2 s and draws inline SVG line charts. Each chart and line carries
 * data attributes (model, points, request count) so that a browser test can check what was drawn.
 */
export async function loadDashboardPage(): Promise<string> {
  const [html, css, js] = await Promise.all([read('index.html'), read('dashboard.css'), read('dashboard.js')]);
  if (!html.includes(STYLESHEET) || !html.includes(SCRIPT))
    throw new Error(`dashboard: index.html must link ${STYLESHEET} and ${SCRIPT}, which the server inlines`);
  return html.replace(STYLESHEET, () => `<style>\n${css}</style>`).replace(SCRIPT, () => `<script>\n${js}</script>`);
}
