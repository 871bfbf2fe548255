# Lists the system calls in an strace log (strace -f -o) that the unit's
# SystemCallFilter=@system-service would refuse, one a line. The first
# file is "systemd-analyze syscall-filter" (every group with its members),
# the second the strace log.
#
#   awk -f syscalls.awk groups.txt trace.txt
FNR == NR {
	if ($0 ~ /^@/) {
		group = $1
	} else if (group != "" && $1 != "" && $1 !~ /^#/) {
		members[group] = members[group] " " $1
	}
	next
}
{
	# "PID name(args) = ret", or "PID <... name resumed>".
	if (match($0, /^[0-9]+ +[a-z_0-9]+\(/)) {
		call = substr($0, RSTART, RLENGTH - 1)
		sub(/^[0-9]+ +/, "", call)
		used[call] = 1
	}
}
END {
	expand("@system-service")
	for (call in used) {
		if (!(call in allowed)) {
			print call
		}
	}
}

function expand(g, n, i, list) {
	if (g in seen) {
		return
	}
	seen[g] = 1
	n = split(members[g], list, " ")
	for (i = 1; i <= n; i++) {
		if (list[i] ~ /^@/) {
			expand(list[i])
		} else {
			allowed[list[i]] = 1
		}
	}
}
