// Bundles livekit-client (the version pinned in package.json / package-lock.json) into one ES
// module the pages import: app/web/static/livekit-client.esm.js. Run with `make web`.
import { readFileSync } from "node:fs";
import * as esbuild from "esbuild";

const pkg = JSON.parse(readFileSync("node_modules/livekit-client/package.json", "utf8"));
await esbuild.build({
  entryPoints: ["src/livekit.js"],
  bundle: true,
  format: "esm",
  minify: true,
  target: "es2020",
  legalComments: "eof",
  banner: { js: `/*! livekit-client ${pkg.version} (npm), bundled with esbuild ${esbuild.version} by web/build.mjs */` },
  outfile: "../app/web/static/livekit-client.esm.js",
  logLevel: "info",
});
