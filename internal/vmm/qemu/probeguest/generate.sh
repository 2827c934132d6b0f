#!/bin/sh
# Builds probe.elf from probe.S with GNU binutils (go generate runs it).
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
as --64 -o "$tmp/probe.o" probe.S
ld -m elf_x86_64 -s -n --build-id=none -T probe.ld -o "$tmp/probe.elf" "$tmp/probe.o"
mv "$tmp/probe.elf" "${1:-probe.elf}"
