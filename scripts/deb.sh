#!/bin/sh
# deb.sh VERSION: dist/anyfront_DEBVERSION_ARCH.deb from bin/ (make build
# first), built by nfpm (goreleaser/nfpm, pinned below, run with go run
# so it stays out of the project's go.mod). Man pages are generated from
# docs/man/*.md with go-md2man, the completion from anyfrontctl itself.
set -eu
VERSION=$1
GO=${GO:-go}
NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0
MD2MAN=github.com/cpuguy83/go-md2man/v2@v2.0.7
ARCH=$($GO env GOARCH)
# Debian versions start with a digit and "-" separates the revision:
# v1.2.3-4-gabc1234 becomes 1.2.3+4+gabc1234; an untagged hash 0.0.0+HASH.
DEBVERSION=$(echo "$VERSION" | sed 's/^v//; s/-/+/g')
case $DEBVERSION in [0-9]*) ;; *) DEBVERSION=0.0.0+$DEBVERSION ;; esac

B=dist/build
rm -rf "$B" && mkdir -p "$B/man"
for page in anyfront anyfrontctl; do
	# The version in the page's footer is the build's.
	sed "s/@VERSION@/$VERSION/" "docs/man/$page.8.md" | $GO run "$MD2MAN" | gzip -9n > "$B/man/$page.8.gz"
done
bin/anyfrontctl completion bash > "$B/anyfrontctl.bash"
# The unit as shipped in deploy/, with the package's paths.
sed 's#/usr/local/bin/#/usr/bin/#g' deploy/anyfront.service > "$B/anyfront.service"

cat > "$B/nfpm.yaml" <<YAML
name: anyfront
arch: $ARCH
platform: linux
version: $DEBVERSION
version_schema: none
section: net
priority: optional
maintainer: anyfront maintainers <anyfront@example.invalid>
description: |
  Anycast DNS load balancer and front-end proxy.
  XDP fast path, proxy to backend resolvers with health checks and a packet
  cache, embedded BGP speaker that announces and withdraws anycast prefixes,
  admin API with a dashboard and Prometheus metrics.
homepage: https://github.com/anyfront/anyfront
license: see /usr/share/doc/anyfront
depends: [adduser]
contents:
  - {src: bin/anyfront, dst: /usr/bin/anyfront, file_info: {mode: 0755}}
  - {src: bin/anyfrontctl, dst: /usr/bin/anyfrontctl, file_info: {mode: 0755}}
  - {src: $B/anyfront.service, dst: /lib/systemd/system/anyfront.service, file_info: {mode: 0644}}
  - {src: $B/man/anyfront.8.gz, dst: /usr/share/man/man8/anyfront.8.gz, file_info: {mode: 0644}}
  - {src: $B/man/anyfrontctl.8.gz, dst: /usr/share/man/man8/anyfrontctl.8.gz, file_info: {mode: 0644}}
  - {src: $B/anyfrontctl.bash, dst: /usr/share/bash-completion/completions/anyfrontctl, file_info: {mode: 0644}}
  - {src: deploy/anyfront.yaml, dst: /etc/anyfront/anyfront.yaml, type: config|noreplace, file_info: {mode: 0640}}
  - {dst: /etc/anyfront, type: dir, file_info: {mode: 0750}}
  - {src: deploy/grafana/anyfront.json, dst: /usr/share/doc/anyfront/grafana/anyfront.json, file_info: {mode: 0644}}
  - {src: deploy/prometheus/alerts.yml, dst: /usr/share/doc/anyfront/prometheus/alerts.yml, file_info: {mode: 0644}}
scripts:
  postinstall: deploy/deb/postinst
  preremove: deploy/deb/prerm
  postremove: deploy/deb/postrm
YAML
$GO run "$NFPM" package --config "$B/nfpm.yaml" --packager deb --target "dist/anyfront_${DEBVERSION}_${ARCH}.deb"
echo "dist/anyfront_${DEBVERSION}_${ARCH}.deb"
