import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { defineConfig } from 'vite';

const here = fileURLToPath(new URL('.', import.meta.url));
const publicDir = join(here, 'public');

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : [path];
  });
}

// Writes sw.js into the build from src/sw.js, with the precache list (the app
// shell: every emitted file and every public file) and a version derived from
// their contents, so a new build replaces the old cache and an unchanged build
// is byte-identical (the stale-build check compares bytes).
function serviceWorker() {
  return {
    name: 'breakglass-service-worker',
    apply: 'build',
    writeBundle(options, bundle) {
      const hash = createHash('sha256');
      const files = new Map();
      for (const [name, chunk] of Object.entries(bundle)) {
        if (name.endsWith('.map')) continue;
        files.set(name, chunk.type === 'chunk' ? chunk.code : chunk.source);
      }
      for (const path of walk(publicDir)) {
        const name = relative(publicDir, path).split('\\').join('/');
        files.set(name, readFileSync(path));
      }
      const names = [...files.keys()].sort();
      for (const name of names) hash.update(name).update('\0').update(files.get(name)).update('\0');
      const precache = ['./', ...names.filter((n) => n !== 'index.html').map((n) => `./${n}`)];
      const source = readFileSync(join(here, 'src', 'sw.js'), 'utf8')
        .replace('__PRECACHE__', JSON.stringify(precache, null, 2))
        .replace('__VERSION__', hash.digest('hex').slice(0, 16));
      writeFileSync(join(options.dir, 'sw.js'), source);
    },
  };
}

export default defineConfig({
  plugins: [svelte(), serviceWorker()],
  base: '/',
  build: {
    // The committed build: the gateway serves it, so the system runs without Node.
    outDir: '../services/gateway/src/gateway/static',
    emptyOutDir: true,
    sourcemap: false,
    target: 'es2022',
    assetsInlineLimit: 0,
  },
  server: {
    proxy: { '/api': 'http://127.0.0.1:8080', '/health': 'http://127.0.0.1:8080' },
  },
});
