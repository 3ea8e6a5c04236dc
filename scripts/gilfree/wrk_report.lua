-- wrk reporter: prints wrk's own summary as one JSON line, so nothing is scraped from its text output.
-- wrk gives durations and latencies in microseconds.
done = function(summary, latency, requests)
  io.write(string.format(
    '\n{"duration_us": %d, "requests": %d, "bytes": %d, "latency_mean_us": %.3f, "latency_max_us": %d, ' ..
    '"errors_connect": %d, "errors_read": %d, "errors_write": %d, "errors_timeout": %d, "errors_status": %d}\n',
    summary.duration, summary.requests, summary.bytes, latency.mean, latency.max,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout,
    summary.errors.status))
end
