#!/usr/bin/env node
/**
 * Build step after tsc (`npm run build`): copies the dashboard's files, src/admin/ui/, and
 * uPlot's browser bundle (from node_modules, so the admin server serves it itself: no CDN)
 * to dist/src/admin/ui/, where src/admin/ui-assets.ts reads them. Plain JavaScript so it runs
 * before anything is compiled.
 */
'use strict';
const { cpSync, mkdirSync, rmSync } = require('node:fs');
const { dirname, join } = require('node:path');

const root = join(__dirname, '..');
const target = join(root, 'dist', 'src', 'admin', 'ui');
// A file removed from src/admin/ui must not linger in dist and keep being served.
rmSync(target, { recursive: true, force: true });
cpSync(join(root, 'src', 'admin', 'ui'), target, { recursive: true });
const uplot = dirname(require.resolve('uplot/package.json'));
mkdirSync(join(target, 'vendor'), { recursive: true });
for (const file of ['uPlot.iife.min.js', 'uPlot.min.css']) cpSync(join(uplot, 'dist', file), join(target, 'vendor', file));
// MIT asks for its notice to travel with the code (not served: the asset list has no .txt).
cpSync(join(uplot, 'LICENSE'), join(target, 'vendor', 'uPlot.LICENSE.txt'));
