# shellcheck shell=bash
# Sourced by bench/publish.sh and bench/pull_verify.sh: the set-up both share.
# Not a benchmark: run-all runs only bench/*.sh.
# The caller sets `bench` (its name, for messages and the scratch directory),
# `here` (the source tree) and `kiln`, and defines die().

# A scratch directory with a private GnuPG home and pull state (what pull
# remembers of the feeds it accepted), removed on exit (its gpg-agent
# stopped), Ctrl-C included. Sets `work`, GNUPGHOME and XDG_STATE_HOME.
feed_bench_workdir() {
  work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-$bench.XXXXXX")
  export GNUPGHOME=$work/gnupg
  export XDG_STATE_HOME=$work/state
  trap 'gpgconf --homedir "$GNUPGHOME" --kill all 2>/dev/null || true; rm -rf --one-file-system -- "$work"' EXIT
  trap 'echo; echo "$bench: interrupted" >&2; exit 130' INT TERM
}

# The image to publish: the argument, else run-all's shared bake
# (BENCH_IMAGE), else a bake of the default recipe (untimed). Sets `image`,
# `name` and `version`.
feed_bench_image() {
  image=${1:-${BENCH_IMAGE:-}}
  if [[ -z $image ]]; then
    echo "$bench: baking recipes/debian-12-minimal.toml (untimed)"
    SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000} "$kiln" bake "$here/recipes/debian-12-minimal.toml" \
      -o "$work/image" --cache "${BENCH_CACHE:-$work/cache}" >/dev/null
    image=$work/image
  fi
  [[ -f $image/manifest.json ]] || die "$image: no manifest.json; give a kiln bake output directory"
  # manifest.json as kiln writes it: two spaces per level.
  name=$(sed -n '/^  "image": {/,/^  }/s/^    "name": "\([^"]*\)".*/\1/p' "$image/manifest.json")
  version=$(sed -n '/^  "image": {/,/^  }/s/^    "version": "\([^"]*\)".*/\1/p' "$image/manifest.json")
}

# A throwaway signing key (ed25519, no passphrase) in GNUPGHOME. Sets `fpr`.
feed_bench_signing_key() {
  mkdir -m 700 "$GNUPGHOME"
  gpg --batch --quiet --pinentry-mode loopback --gen-key 2>/dev/null <<KEY
%no-protection
Key-Type: eddsa
Key-Curve: ed25519
Key-Usage: sign
Name-Real: kiln benchmark
Name-Email: bench@kiln.invalid
Expire-Date: 0
%commit
KEY
  fpr=$(gpg --batch --with-colons --list-secret-keys | awk -F: '/^fpr/ { print $10; exit }')
}
