# Reading busted's plainTerminal output; sourced by scripts/run-spec and
# scripts/check-memory.

# The log without colour codes.
busted_plain() { sed 's/\x1b\[[0-9;]*m//g' "$1"; }

# busted's closing line: "N successes / N failures / N errors / N pending : T seconds".
busted_summary() { busted_plain "$1" | grep -E '^[0-9]+ successes? / ' | tail -n 1; }

# Each failing test in three lines: "Failure -> file @ line" (or "Error -> "),
# the test's name, its message's first line; at most 30 lines of 300 bytes.
busted_failures() {
  busted_plain "$1" | grep -A 2 -E '^(Failure|Error) -> ' | grep -vE '^--$' | cut -c 1-300 | head -n 30
}
