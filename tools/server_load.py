#!/usr/bin/env python3
"""Load test for g2w-server: N concurrent streaming completions, measured from the client.

Usage: tools/server_load.py [--url http://127.0.0.1:8080] [--concurrency 1,8] [--max-tokens 128]
                            [--prompt TEXT] [--rounds 2] [--api-key KEY] [--json]

For each concurrency level it starts that many streaming requests at once (greedy, ignore_eos, so
every stream generates exactly --max-tokens tokens), and reports:
  - aggregate generated tokens/s: all streams' tokens / wall time from the first request sent to
    the last stream finished (prompt processing included);
  - time between tokens per stream: (last chunk - first chunk) / (tokens - 1), mean over streams;
  - time to first token, mean over streams.
Then the ratios against the first level (normally 1, the single-stream figures).
Standard library only (http.client, threads).
"""
import argparse, http.client, json, statistics, sys, threading, time, urllib.parse


def stream_once(url, body, api_key, out, i):
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=600)
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = "Bearer " + api_key
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", json.dumps(body), headers)
    r = conn.getresponse()
    if r.status != 200:
        out[i] = {"error": f"HTTP {r.status}: {r.read()[:200]!r}"}
        return
    times, tokens, buf = [], None, b""
    while True:
        line = r.fp.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data: "):
            continue
        data = line[6:]
        if data == b"[DONE]":
            break
        j = json.loads(data)
        if j.get("usage"):
            tokens = j["usage"]["completion_tokens"]
        for c in j.get("choices", []):
            if c.get("text"):
                times.append(time.perf_counter())
    t1 = time.perf_counter()
    conn.close()
    out[i] = {"start": t0, "end": t1, "first": times[0] if times else t1, "last": times[-1] if times else t1,
              "chunks": len(times), "tokens": tokens if tokens is not None else len(times)}


def run_level(args, n):
    body = {"prompt": args.prompt, "max_tokens": args.max_tokens, "temperature": 0, "ignore_eos": True,
            "stream": True, "stream_options": {"include_usage": True}}
    out = [None] * n
    threads = [threading.Thread(target=stream_once, args=(args.url, body, args.api_key, out, i)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [o["error"] for o in out if "error" in o]
    if errors:
        raise SystemExit(f"{len(errors)} of {n} requests failed: {errors[0]}")
    start = min(o["start"] for o in out)
    end = max(o["end"] for o in out)
    tokens = sum(o["tokens"] for o in out)
    itl = [(o["last"] - o["first"]) / max(1, o["chunks"] - 1) for o in out]
    ttft = [o["first"] - o["start"] for o in out]
    return {"concurrency": n, "tokens": tokens, "seconds": end - start, "aggregate_tok_s": tokens / (end - start),
            "per_stream_tok_s": statistics.mean(o["tokens"] / (o["end"] - o["start"]) for o in out),
            "itl_ms_mean": 1000 * statistics.mean(itl), "itl_ms_max": 1000 * max(itl), "ttft_ms_mean": 1000 * statistics.mean(ttft)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--concurrency", default="1,8", help="comma-separated levels; the first is the baseline")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--prompt", default="The history of the city begins")
    p.add_argument("--rounds", type=int, default=3, help="runs per level, the levels interleaved (1, 8, 1, 8, ...) so that a busy moment of the machine hits both; the best and the median are reported")
    p.add_argument("--api-key")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    levels = [int(x) for x in args.concurrency.split(",")]
    # Warm-up (page in the weights, start the workers).
    run_level(argparse.Namespace(**{**vars(args), "max_tokens": 8}), 1)
    runs = {n: [] for n in levels}
    for _ in range(args.rounds):
        for n in levels:
            runs[n].append(run_level(args, n))
    results = []
    for how in ("best", "median"):
        for n in levels:
            rs = sorted(runs[n], key=lambda r: r["aggregate_tok_s"])
            r = dict(rs[-1] if how == "best" else rs[len(rs) // 2])
            r["which"] = how
            results.append(r)
    for r in results:
        base = next(b for b in results if b["which"] == r["which"] and b["concurrency"] == levels[0])
        r["aggregate_vs_base"] = r["aggregate_tok_s"] / base["aggregate_tok_s"]
        r["itl_vs_base"] = r["itl_ms_mean"] / base["itl_ms_mean"]
    if args.json:
        print(json.dumps(results, indent=1))
        return
    print(f"{args.rounds} rounds per level, interleaved; {args.max_tokens} tokens per stream; load average {open('/proc/loadavg').read().split()[0]}")
    print(f"{'run':>6} {'streams':>7} {'tokens':>7} {'seconds':>8} {'agg tok/s':>10} {'x base':>7} {'ms/token':>9} {'x base':>7} {'max ms/tok':>10} {'TTFT ms':>8}")
    for r in results:
        print(f"{r['which']:>6} {r['concurrency']:>7} {r['tokens']:>7} {r['seconds']:>8.2f} {r['aggregate_tok_s']:>10.1f} {r['aggregate_vs_base']:>7.2f} "
              f"{r['itl_ms_mean']:>9.1f} {r['itl_vs_base']:>7.2f} {r['itl_ms_max']:>10.1f} {r['ttft_ms_mean']:>8.0f}")


if __name__ == "__main__":
    main()
