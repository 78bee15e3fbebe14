# Turns `go test -bench` output into one table: package, benchmark, and each
# metric the benchmark reported (ns/op, MB/s, B/op, allocs/op and custom
# units such as p50-ms or peak-heap-MiB).
/^pkg: / { pkg = $2; sub(/^gitlab-serverless-runner\//, "", pkg); next }
/^Benchmark/ {
	name = $1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name)
	metrics = ""
	for (i = 3; i + 1 <= NF; i += 2) {
		v = $i; u = $(i + 1)
		if (u == "ns/op") {
			if (v >= 1e9) { v = sprintf("%.2f", v / 1e9); u = "s/op" }
			else if (v >= 1e6) { v = sprintf("%.2f", v / 1e6); u = "ms/op" }
			else if (v >= 1e3) { v = sprintf("%.1f", v / 1e3); u = "µs/op" }
		}
		metrics = metrics (metrics == "" ? "" : ", ") v " " u
	}
	rows[++n] = sprintf("| %-22s | %-40s | %s |", pkg, name, metrics)
	next
}
/^(FAIL|panic:|--- FAIL)/ { failed = 1; print }
END {
	printf("| %-22s | %-40s | %s |\n", "package", "benchmark", "result")
	printf("|%s|%s|%s|\n", "------------------------", "------------------------------------------", "--------")
	for (i = 1; i <= n; i++) print rows[i]
	if (failed) exit 1
}
