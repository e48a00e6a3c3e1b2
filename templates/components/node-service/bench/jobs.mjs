// POSTs a fixed number of jobs to the gateway's /v1/jobs with autocannon (the hybrid root's
// `make bench` runs it) and prints {"ids": [...], "seconds": ..., "failed": ...} on stdout: the id
// of every accepted job, so the caller can follow each one to its result.
// usage: node bench/jobs.mjs URL API_KEY JOBS CONNECTIONS
import autocannon from "autocannon";

const [, , url, apiKey, jobs, connections] = process.argv;
const ids = [];
let failed = 0;
const started = performance.now();
const result = await autocannon({
  url,
  connections: Number(connections),
  amount: Number(jobs),
  requests: [
    {
      method: "POST",
      path: "/v1/jobs",
      headers: { "content-type": "application/json", "x-api-key": apiKey },
      body: JSON.stringify({ features: [5.1, 3.5, 1.4, 0.2] }),
      onResponse: (status, body) => {
        if (status === 202) ids.push(JSON.parse(body).id);
        else failed += 1;
      },
    },
  ],
});
const seconds = (performance.now() - started) / 1000;
console.log(JSON.stringify({ ids, seconds, failed: failed + result.errors + result.timeouts }));
