#!/bin/bash
# sealgate-sealimg (tools/stamp/sealgate-sealimg.c): draws the round seal
# and a policy's image to PNG files of the asked size, refuses bad
# arguments with exit 2 and bad input with exit 1 and the reason.
# $1: the sealgate-sealimg binary.
set -eu
tool=$1
dir=$(mktemp -d /tmp/sg-sealimg-tool-XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# width x height of a PNG, from its IHDR
size() { python3 -c 'import struct,sys; d=open(sys.argv[1],"rb").read(24); assert d[:8]==b"\x89PNG\r\n\x1a\n" and d[12:16]==b"IHDR"; print("%dx%d" % struct.unpack(">II", d[16:24]))' "$1"; }

"$tool" --seal-name 测试科技有限公司 --kind contract --code 12345 -o "$dir/seal.png" ||
	fail "the round seal was not drawn"
[ "$(size "$dir/seal.png")" = 600x600 ] || fail "default diameter: $(size "$dir/seal.png")"
"$tool" --seal-name 测试科技有限公司 --diameter 128 --color '#0000FF' -o "$dir/small.png"
[ "$(size "$dir/small.png")" = 128x128 ] || fail "--diameter 128: $(size "$dir/small.png")"
# The drawn seal, read back as a policy's image, scaled.
"$tool" --image "$dir/seal.png" --diameter 200 -o "$dir/again.png"
[ "$(size "$dir/again.png")" = 200x200 ] || fail "--image: $(size "$dir/again.png")"

rc=0; "$tool" -o "$dir/x.png" 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "no seal name nor image: exit $rc"
rc=0; "$tool" --seal-name A --image "$dir/seal.png" -o "$dir/x.png" 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "both a name and an image: exit $rc"
rc=0; "$tool" --seal-name A --diameter 12x -o "$dir/x.png" 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "a bad diameter: exit $rc"
rc=0; "$tool" --seal-name A --color red -o "$dir/x.png" 2>"$dir/err" || rc=$?
[ "$rc" = 1 ] && grep -q '#RRGGBB' "$dir/err" || fail "a bad colour: exit $rc, $(cat "$dir/err")"
printf 'GIF89a' >"$dir/bad.gif"
rc=0; "$tool" --image "$dir/bad.gif" -o "$dir/x.png" 2>"$dir/err" || rc=$?
[ "$rc" = 1 ] && grep -q "bad.gif: the image is neither a PNG nor an SVG" "$dir/err" ||
	fail "not an image: exit $rc, $(cat "$dir/err")"
[ ! -e "$dir/x.png" ] || fail "an output was written for a refusal"
echo "sealgate-sealimg: ok"
