#!/usr/bin/env bash
# install-deps.sh [run|test|bench|generate]: installs what `make run`,
# `make test`, `make bench` or `make generate` needs on Debian, idempotently
# and quietly, then downloads the Go modules.
#
#   run    unbound (demo resolvers), dnsutils (dig)
#   test   run's, plus knot-dnsutils (kdig), dnsperf, bird2 (BGP peer),
#          chromium (headless, for the dashboard test), iproute2 (ip and
#          tc, for the namespace tests), nftables (nft: the lossy
#          backend farm drops packets with it; this kernel has no netem),
#          bind9 (named: the authoritative backend for cookie, NSID, EXPIRE
#          and TSIG tests), bind9-utils and prometheus (a real scrape of two
#          nodes, promtool for the alert rules), curl (an HTTP/2 client
#          of the DoH server), openssl (s_client, a second TLS client for
#          session resumption and certificate choice)
#   bench  test's, plus dnsdist (the benchmark's peer)
#   generate  clang, llvm (llvm-strip) and libbpf-dev, to recompile ebpf/xdp.c
#
# Only the missing packages are installed, with one `apt-get update` when
# there is something to install. Installing unbound, dnsdist or bind9 must not leave
# a daemon on port 53 or touch /etc/resolv.conf: their services are kept from
# starting (policy-rc.d) and disabled, since the lab runs its own instances.
set -euo pipefail

mode=${1:-test}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# package -> a program it installs, to tell whether it is there.
declare -A provides=(
	[unbound]=unbound
	[dnsutils]=dig
	[knot-dnsutils]=kdig
	[dnsperf]=dnsperf
	[dnsdist]=dnsdist
	[bird2]=bird
	[chromium]=chromium
	[iproute2]=tc
	[nftables]=nft
	[bind9]=named
	[bind9-utils]=named-checkconf
	[prometheus]=promtool
	[curl]=curl
	[openssl]=openssl
	[clang]=clang
	[llvm]=llvm-strip
	[libbpf-dev]=/usr/include/bpf/bpf_helpers.h
)
case $mode in
run) wanted=(unbound dnsutils) ;;
test) wanted=(unbound dnsutils knot-dnsutils dnsperf bird2 chromium iproute2 nftables bind9 bind9-utils prometheus curl openssl) ;;
bench) wanted=(unbound dnsutils knot-dnsutils dnsperf bird2 dnsdist nftables) ;;
generate) wanted=(clang llvm libbpf-dev) ;;
*)
	echo "usage: $0 [run|test|bench|generate]" >&2
	exit 2
	;;
esac

# Debian installs daemons in /usr/sbin, often missing from a user's PATH.
export PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin:/usr/local/go/bin

missing=()
for pkg in "${wanted[@]}"; do
	# A provides entry is a program, or (for headers) a file.
	case ${provides[$pkg]} in
	/*) [ -e "${provides[$pkg]}" ] || missing+=("$pkg") ;;
	*) command -v "${provides[$pkg]}" >/dev/null 2>&1 || missing+=("$pkg") ;;
	esac
done
# unbound-control (for the lab's Stats) comes with unbound; check it too.
if command -v unbound >/dev/null 2>&1 && ! command -v unbound-control >/dev/null 2>&1; then
	missing+=(unbound)
fi

# listeners53 prints the sockets listening on port 53, if any.
listeners53() {
	if command -v ss >/dev/null 2>&1; then
		ss -Hlntup 'sport = :53' 2>/dev/null || true
	fi
}

# Set while our temporary policy-rc.d is in place, for restore_policy.
policy_ours=""
policy_saved=""
apt_log=""

# restore_policy removes our policy-rc.d and puts back what was there.
# It runs at exit too, so an interrupted install leaves nothing behind.
restore_policy() {
	if [ -n "$policy_ours" ]; then
		rm -f "$policy_ours"
		[ -z "$policy_saved" ] || mv "$policy_saved" "$policy_ours"
		policy_ours=""
		policy_saved=""
	fi
	[ -z "$apt_log" ] || rm -f "$apt_log"
	apt_log=""
}

install_packages() {
	local pkgs=("$@") policy=/usr/sbin/policy-rc.d before after
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "install-deps: no apt-get here; install these packages (Debian names): ${pkgs[*]}" >&2
		exit 1
	fi
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-deps: missing packages: ${pkgs[*]}" >&2
		echo "install-deps: run as root, or: sudo apt-get install --no-install-recommends ${pkgs[*]}" >&2
		exit 1
	fi
	trap restore_policy EXIT
	trap 'exit 130' INT TERM
	apt_log=$(mktemp)
	before=$(listeners53)

	# Debian's maintainer scripts start a package's service through
	# invoke-rc.d / deb-systemd-invoke, which both ask policy-rc.d first;
	# exit 101 means "not allowed". Keep an existing policy that already
	# forbids starts (Docker images ship one); otherwise put ours in place
	# for the install only, and restore what was there afterwards.
	if ! { [ -x "$policy" ] && { "$policy" unbound start >/dev/null 2>&1; [ $? -eq 101 ]; }; }; then
		if [ -e "$policy" ]; then
			policy_saved=$policy.anyfront-saved
			mv "$policy" "$policy_saved"
		fi
		policy_ours=$policy
		printf '#!/bin/sh\n# Temporary, from anyfront scripts/install-deps.sh: start no service.\nexit 101\n' >"$policy"
		chmod 755 "$policy"
	fi

	echo "install-deps: installing ${pkgs[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${pkgs[@]}"; } >"$apt_log" 2>&1; then
		echo "install-deps: apt-get failed:" >&2
		tail -n 30 "$apt_log" >&2
		exit 1
	fi
	restore_policy

	# The packages enable their units for the next boot; the lab never uses
	# them, and unbound-resolvconf.service would point /etc/resolv.conf at
	# a local unbound. Disable what we just installed (only that).
	local units=()
	for pkg in "${pkgs[@]}"; do
		case $pkg in
		unbound) units+=(unbound.service unbound-resolvconf.service) ;;
		dnsdist) units+=(dnsdist.service) ;;
		bind9) units+=(named.service named-resolvconf.service) ;;
		bird2) units+=(bird.service) ;;
		prometheus) units+=(prometheus.service) ;;
		esac
		case $pkg in
		unbound | dnsdist | prometheus) command -v update-rc.d >/dev/null 2>&1 && update-rc.d "$pkg" disable >/dev/null 2>&1 || true ;;
		bind9) command -v update-rc.d >/dev/null 2>&1 && update-rc.d named disable >/dev/null 2>&1 || true ;;
		esac
	done
	if [ ${#units[@]} -gt 0 ] && command -v systemctl >/dev/null 2>&1; then
		systemctl disable --quiet "${units[@]}" >/dev/null 2>&1 || true
	fi

	after=$(listeners53)
	if [ "$after" != "$before" ]; then
		echo "install-deps: something started listening on port 53 during the install:" >&2
		echo "$after" >&2
		echo "install-deps: stop it (e.g. systemctl stop unbound dnsdist named); the lab does not need it" >&2
		exit 1
	fi
}

if [ ${#missing[@]} -gt 0 ]; then
	# Deduplicate (unbound can be listed twice).
	mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
	install_packages "${missing[@]}"
fi

if command -v go >/dev/null 2>&1; then
	(cd "$repo" && go mod download)
else
	echo "install-deps: go not found; install Go (see go.mod for the version)" >&2
	exit 1
fi
