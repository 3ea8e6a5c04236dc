-- wrk reporter: prints wrk's own summary as one JSON line, so nothing is scraped from its text output.
-- wrk gives durations and latencies in microseconds. The percentiles come from the same latency histogram as
-- the mean and the maximum (wrk's coordinated-omission-corrected one).
local PERCENTILES = {"50", "90", "99", "99.9"}

done = function(summary, latency, requests)
  local percentiles = {}
  for _, p in ipairs(PERCENTILES) do
    percentiles[#percentiles + 1] = string.format('"%s": %d', p, latency:percentile(tonumber(p)))
  end
  io.write(string.format(
    '\n{"duration_us": %d, "requests": %d, "bytes": %d, "latency_mean_us": %.3f, "latency_max_us": %d, ' ..
    '"latency_percentiles_us": {%s}, ' ..
    '"errors_connect": %d, "errors_read": %d, "errors_write": %d, "errors_timeout": %d, "errors_status": %d}\n',
    summary.duration, summary.requests, summary.bytes, latency.mean, latency.max, table.concat(percentiles, ", "),
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout,
    summary.errors.status))
end
