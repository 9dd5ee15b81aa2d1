# shellcheck shell=bash
# Sourced by benchmarks that look inside a baked image: where its root
# filesystem is. root.img when the recipe asked for "partitions"; else the
# root partition of disk.raw, as the default recipe leaves it.
#
#   bench_root_partition DIR   the root partition's number and byte offset
#                              and size in DIR/disk.raw ("2 135266304 2010120192")
#   bench_root_fs DIR          the root filesystem as e2fsck and debugfs take
#                              it: DIR/root.img or DIR/disk.raw?offset=N

bench_root_partition() {
  python3 - "$1/manifest.json" <<'PY'
import json, sys
for p in json.load(open(sys.argv[1]))["image"]["partitions"]:
    if p["name"] == "root":
        print(p["number"], p["offset"], p["size"])
        break
else:
    sys.exit(sys.argv[1] + ": no root partition")
PY
}

bench_root_fs() {
  if [[ -f $1/root.img ]]; then echo "$1/root.img"; return; fi
  local offset
  read -r _ offset _ < <(bench_root_partition "$1") || return 1
  [[ -n $offset ]] || return 1
  echo "$1/disk.raw?offset=$offset"
}
