// Builds the cookie banner: `npm run build` (here, after `npm ci`) writes banner/dist/banner.js and banner.css.
//
// esbuild bundles the ES modules of banner/ from main.js into one classic script (an IIFE: it must run
// synchronously, before the site's tags, with document.currentScript set), minified. banner.css is minified by
// esbuild too and inlined as a string (the text loader): one request, no flash of an unstyled banner. The minified
// stylesheet is also written beside it, so that its weight can be measured (bench/banner_size.py).
//
// Both files are committed: the server reads them and never needs Node. tests/banner/test_build.py rebuilds them
// and fails when they differ from the committed bytes. `node build.mjs DIR` writes the two files into DIR instead.
import {mkdir, readFile, writeFile} from "node:fs/promises";
import {dirname, join, resolve} from "node:path";
import {fileURLToPath} from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const source = join(here, "banner");
const out = resolve(process.argv[2] || join(source, "dist"));

async function minifiedCss(path) {
  const {code} = await esbuild.transform(await readFile(path, "utf8"), {loader: "css", minify: true});
  return code.trim();
}

const css = await minifiedCss(join(source, "banner.css"));
const inlineCss = {
  name: "inline-css",
  setup(build) {
    build.onLoad({filter: /\.css$/}, async (args) => ({contents: await minifiedCss(args.path), loader: "text"}));
  },
};

const result = await esbuild.build({
  entryPoints: [join(source, "main.js")],
  bundle: true,
  format: "iife",
  // The sources are ES modules, strict by definition; the bundle is a classic script, so it says so itself.
  banner: {js: '"use strict";'},
  minify: true,
  target: "es2020",
  charset: "utf8",
  legalComments: "none",
  plugins: [inlineCss],
  write: false,
  logLevel: "warning",
});
await mkdir(out, {recursive: true});
await writeFile(join(out, "banner.js"), result.outputFiles[0].contents);
await writeFile(join(out, "banner.css"), css + "\n");
console.log(`wrote ${join(out, "banner.js")} and banner.css`);
