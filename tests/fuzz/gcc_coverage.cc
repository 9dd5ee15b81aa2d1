// Coverage feedback for libFuzzer from g++. kiln needs C++23's
// std::expected, which Debian 12's clang 14 cannot compile, so fuzz builds
// use g++ with -fsanitize-coverage=trace-pc,trace-cmp. g++ calls
// __sanitizer_cov_trace_pc() at every basic block; libFuzzer 14 no longer
// implements it (its own definition is weakened at build time), but does take
// inline 8-bit counters. Each call site's address is hashed onto a counter:
// collisions only blur coverage a little. trace-cmp's hooks
// (__sanitizer_cov_trace_cmp4 and the rest) are libFuzzer's own, so it
// learns the constants inputs are compared with (magic numbers, keywords).
// libFuzzer reports this coverage as "ft:" (features); it prints no "cov:"
// because g++ emits no PC table.
#include <cstddef>
#include <cstdint>

extern "C" void __sanitizer_cov_8bit_counters_init(uint8_t* start, uint8_t* stop);

namespace {

constexpr size_t kCounters = size_t{1} << 18;
alignas(64) uint8_t g_counters[kCounters];

struct RegisterCounters {
  RegisterCounters() { __sanitizer_cov_8bit_counters_init(g_counters, g_counters + kCounters); }
} g_register;

}  // namespace

extern "C" __attribute__((no_sanitize_address, no_sanitize_coverage)) void __sanitizer_cov_trace_pc() {
  auto pc = reinterpret_cast<uintptr_t>(__builtin_return_address(0));
  uint8_t& counter = g_counters[(pc ^ (pc >> 18)) & (kCounters - 1)];
  counter = static_cast<uint8_t>(counter + 1);
}

// g++'s trace-cmp also reports float and double comparisons, which
// libFuzzer has no hooks for; they add nothing a mutation could use.
extern "C" __attribute__((no_sanitize_address, no_sanitize_coverage)) void __sanitizer_cov_trace_cmpf(float, float) {}
extern "C" __attribute__((no_sanitize_address, no_sanitize_coverage)) void __sanitizer_cov_trace_cmpd(double, double) {}
