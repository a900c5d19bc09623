#!/usr/bin/env bash
# Smoke run of the jsonbus fuzz targets, for the test suite: builds them (installing
# cargo-fuzz first if it is missing) and runs each for about 10 seconds, one after another,
# starting from its committed seeds (fuzz/corpus/<target>) and saved reproducers
# (fuzz/regressions/<target>). New inputs go to a temporary folder, never into the committed
# corpus. Exits non-zero on the first crash, assertion, leak or timeout.
#
# Needs only the stable toolchain: RUSTC_BOOTSTRAP=1 lets it accept the nightly flags
# cargo-fuzz passes (-Zsanitizer=address). SMOKE_SECONDS changes the time per target.
# The mutations start from a fixed seed (SMOKE_SEED, default 1), so a CI run replays the same
# inputs as the last one; SMOKE_SEED=0 lets libFuzzer pick one, as a long run should.
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
seconds="${SMOKE_SECONDS:-10}"
seed="${SMOKE_SEED:-1}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz (about a minute and a half, once)"
    cargo install cargo-fuzz --locked
fi

echo "== cargo fuzz build"
cargo fuzz build --debug-assertions

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# target, dictionary, -max_len
targets=(
    "publish json 4096"
    "options options 1024"
    "patterns topics 2048"
    "sequence - 512"
    "hostile_peer - 2048"
    "validate json 4096"
)
for spec in "${targets[@]}"; do
    read -r target dict max_len <<<"$spec"
    mkdir -p "$scratch/$target" "regressions/$target"
    args=(-max_total_time="$seconds" -seed="$seed" -max_len="$max_len" -timeout=20 -rss_limit_mb=4096
          -print_final_stats=1 -artifact_prefix="$scratch/$target-")
    [ "$dict" != - ] && args+=(-dict="dict/$dict.dict")
    echo "== $target: ${seconds}s"
    if ! cargo fuzz run --debug-assertions "$target" "$scratch/$target" "corpus/$target" \
            "regressions/$target" -- "${args[@]}" >"$scratch/$target.log" 2>&1; then
        tail -n 60 "$scratch/$target.log"
        for f in "$scratch/$target"-*; do
            [ -e "$f" ] || continue
            mkdir -p artifacts/"$target"
            cp "$f" artifacts/"$target"/
            echo "reproducer kept: fuzz/artifacts/$target/$(basename "$f")"
        done
        echo "FAILED: fuzz target $target" >&2
        exit 1
    fi
    grep -E "stat::number_of_executed_units|DONE" "$scratch/$target.log" | tr '\n' ' '
    echo
done
echo "== all fuzz targets passed"
